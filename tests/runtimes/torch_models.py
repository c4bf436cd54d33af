"""A small torch classifier, written as TorchScript, as a torch.export program or pickled, with
torch's own predictions. Imported only where torch is installed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from tests.runtimes.builders import N_FEATURES, Expected, version_folder

DECLARED = """\
inputs: [{name: input, datatype: FP32, shape: [-1, 4]}]
outputs:
  - {name: logits, datatype: FP32, shape: [-1, 3]}
  - {name: label, datatype: INT64, shape: [-1]}
"""


class Classifier(torch.nn.Module):
    """FP32 ``input`` [-1, 4] -> ``logits`` [-1, 3] and ``label`` [-1] (module level, so that
    a pickle of it loads in the server process)."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = torch.nn.Linear(N_FEATURES, 8)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, input: torch.Tensor) -> dict[str, torch.Tensor]:  # the input name served
        logits = self.head(torch.relu(self.hidden(input)))
        return {"logits": logits, "label": logits.argmax(dim=1)}


def module() -> Classifier:
    torch.manual_seed(0)
    return Classifier().eval()


def expected_of(model: Any) -> Expected:
    def expected(rows: np.ndarray) -> dict[str, Any]:
        with torch.inference_mode():
            result = model(torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32)))
        return {name: tensor.numpy() for name, tensor in result.items()}

    return expected


def scripted(repo: Path, name: str, yaml: str = DECLARED) -> Expected:
    model = torch.jit.script(module())
    model.save(str(version_folder(repo, name) / "model.pt"))
    (repo / name / "model.yaml").write_text(yaml)
    return expected_of(model)


def exported(repo: Path, name: str, yaml: str | None = None) -> Expected:
    model = module()
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(
        model, (torch.zeros(2, N_FEATURES),), dynamic_shapes={"input": {0: batch}}
    )
    torch.export.save(program, version_folder(repo, name) / "model.pt2")
    if yaml is not None:
        (repo / name / "model.yaml").write_text(yaml)
    return expected_of(program.module())


def pickled(repo: Path, name: str, file: str = "model.pth", yaml: str = DECLARED) -> Expected:
    """The module saved whole with torch.save: a pickle, loaded only when trusted."""
    model = module()
    torch.save(model, version_folder(repo, name) / file)
    (repo / name / "model.yaml").write_text(yaml)
    return expected_of(model)
