"""PyTorch models for the convert tests: the classifier of tests/runtimes/torch_models.py
returning a tuple (TorchScript's ONNX exporter cannot export a dict). Imported only where torch
is installed."""

from __future__ import annotations

from pathlib import Path

import torch

from tests.runtimes import torch_models
from tests.runtimes.builders import version_folder


class TupleClassifier(torch.nn.Module):
    """``input`` [-1, 4] FP32 -> (``logits`` [-1, 3] FP32, ``label`` [-1] INT64)."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = torch_models.module()

    def forward(self, input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        result = self.inner(input)
        return result["logits"], result["label"]


def scripted_tuple(repo: Path, name: str) -> torch_models.Expected:
    """``<repo>/<name>/1/model.pt`` (TorchScript) with model.yaml declaring its tensors."""
    model = torch.jit.script(TupleClassifier().eval())
    model.save(str(version_folder(repo, name) / "model.pt"))
    (repo / name / "model.yaml").write_text(torch_models.DECLARED)
    return torch_models.expected_of(torch_models.module())
