"""The PyTorch runtime in-process: TorchScript and torch.export files, their inputs and outputs,
the refusal of pickles, the intra-op thread count, and predictions equal to torch's."""

from __future__ import annotations

import io
import zipfile
from collections import UserDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from serval.core.errors import InvalidInputError, ModelConfigError, ModelLoadError
from serval.core.lifecycle.loader import LoadRequest
from serval.core.model_spec import ModelSpec
from serval.core.servable import Predictor
from serval.core.tensors.datatypes import DataType
from serval.core.types import InferenceRequest, RequestedOutput, Tensor
from serval.runtimes.registry import RuntimeRegistry
from tests.runtimes import builders

torch = pytest.importorskip("torch")

from serval.runtimes.pytorch.threads import (  # noqa: E402 - after the importorskip
    IntraOpThreads,
    Wish,
    default_intra_op_threads,
)
from tests.runtimes import torch_models  # noqa: E402

ROWS = np.random.default_rng(7).normal(size=(9, 4)).astype(np.float32)
DECLARED = ModelSpec.parse(
    {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [
            {"name": "logits", "datatype": "FP32", "shape": [-1, 3]},
            {"name": "label", "datatype": "INT64", "shape": [-1]},
        ],
    },
    source="model.yaml",
)


def load(folder: Path, spec: ModelSpec | None = None, **fields: Any) -> Predictor:
    base = (spec or ModelSpec()).model_dump(exclude_unset=True)
    request = LoadRequest(folder.parent.name, 1, folder, ModelSpec(**{**base, **fields}))
    return RuntimeRegistry.default()(request).load()


def predict(
    predictor: Predictor, rows: np.ndarray = ROWS, outputs: list[str] | None = None
) -> dict[str, np.ndarray]:
    request = InferenceRequest(
        "m",
        [Tensor("input", DataType.FP32, rows)],
        outputs=None if outputs is None else [RequestedOutput(n) for n in outputs],
    )
    return {t.name: t.data for t in predictor.predict(request).outputs}


def assert_equals_torch(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert set(got) == set(want)
    for name, array in want.items():
        np.testing.assert_allclose(got[name], array, rtol=1e-6, atol=1e-6)


# -- files ---------------------------------------------------------------------------------


def test_exported_program_says_its_tensors_with_a_dynamic_batch(tmp_path: Path) -> None:
    expected = builders.torch_exported(tmp_path, "exported")
    predictor = load(tmp_path / "exported" / "1")
    meta = predictor.metadata
    assert meta.platform == "torch_export"
    assert [(s.name, s.datatype, s.shape) for s in meta.inputs] == [
        ("input", DataType.FP32, (-1, 4))
    ]
    assert [(s.name, s.datatype, s.shape) for s in meta.outputs] == [
        ("logits", DataType.FP32, (-1, 3)),
        ("label", DataType.INT64, (-1,)),
    ]
    assert_equals_torch(predict(predictor), expected(ROWS))
    assert_equals_torch(predict(predictor, ROWS[:1]), expected(ROWS[:1]))  # one row: batch 1
    predictor.close()


def test_torchscript_takes_its_tensors_from_model_yaml(tmp_path: Path) -> None:
    expected = builders.torch_scripted(tmp_path, "scripted")
    predictor = load(tmp_path / "scripted" / "1", DECLARED)
    assert predictor.metadata.platform == "pytorch_libtorch"
    assert_equals_torch(predict(predictor), expected(ROWS))
    assert list(predict(predictor, outputs=["label"])) == ["label"]
    predictor.close()


def test_torchscript_without_declared_tensors_names_the_fields_to_add(tmp_path: Path) -> None:
    builders.torch_scripted(tmp_path, "scripted")
    with pytest.raises(ModelConfigError) as raised:
        load(tmp_path / "scripted" / "1")
    message = str(raised.value)
    assert "declare inputs and outputs" in message
    assert "name, datatype and shape" in message


def test_torchscript_declared_inputs_must_match_forward(tmp_path: Path) -> None:
    builders.torch_scripted(tmp_path, "scripted")
    two_inputs = DECLARED.model_dump(exclude_unset=True)
    two_inputs["inputs"] = [
        {"name": "a", "datatype": "FP32", "shape": [-1, 4]},
        {"name": "b", "datatype": "FP32", "shape": [-1, 4]},
    ]
    with pytest.raises(ModelConfigError, match=r"2 declared, but forward takes 1 \(input\)"):
        load(tmp_path / "scripted" / "1", ModelSpec(**two_inputs))
    no_shape = DECLARED.model_dump(exclude_unset=True)
    no_shape["outputs"] = [{"name": "logits", "datatype": "FP32"}, {"name": "label"}]
    with pytest.raises(ModelConfigError, match="logits: declare its shape"):
        load(tmp_path / "scripted" / "1", ModelSpec(**no_shape))
    text = DECLARED.model_dump(exclude_unset=True)
    text["inputs"] = [{"name": "input", "datatype": "BYTES", "shape": [-1, 4]}]
    with pytest.raises(ModelConfigError, match="torch has no BYTES tensors"):
        load(tmp_path / "scripted" / "1", ModelSpec(**text))


def test_torchscript_outputs_that_forward_does_not_return_fail_the_warm_up(
    tmp_path: Path,
) -> None:
    builders.torch_scripted(tmp_path, "scripted")
    wrong = DECLARED.model_dump(exclude_unset=True)
    wrong["outputs"] = [{"name": "scores", "datatype": "FP32", "shape": [-1, 3]}]
    with pytest.raises(ModelLoadError, match="forward returned a dict without scores"):
        load(tmp_path / "scripted" / "1", ModelSpec(**wrong))


def test_an_input_the_model_cannot_take_is_an_invalid_input(tmp_path: Path) -> None:
    builders.torch_scripted(tmp_path, "scripted")
    builders.torch_exported(tmp_path, "exported")
    loose = DECLARED.model_dump(exclude_unset=True)
    loose["inputs"] = [{"name": "input", "datatype": "FP32", "shape": [-1, -1]}]
    loose["warmup"] = {"enabled": False}  # zeros of width 1 would fail it
    scripted = load(tmp_path / "scripted" / "1", ModelSpec(**loose))
    with pytest.raises(InvalidInputError, match="shapes cannot be multiplied"):
        predict(scripted, np.zeros((2, 5), np.float32))
    exported = load(
        tmp_path / "exported" / "1",
        inputs=[{"name": "input", "shape": [-1, -1]}],
        warmup={"enabled": False},
    )
    with pytest.raises(InvalidInputError, match="torch cannot run the model on this input"):
        predict(exported, np.zeros((2, 5), np.float32))


def test_a_read_only_input_is_copied_not_shared(tmp_path: Path) -> None:
    expected = builders.torch_exported(tmp_path, "exported")
    rows = np.frombuffer(ROWS.tobytes(), dtype=np.float32).reshape(ROWS.shape)
    assert not rows.flags.writeable
    assert_equals_torch(predict(load(tmp_path / "exported" / "1"), rows), expected(ROWS))


# -- pickles -------------------------------------------------------------------------------


def test_a_pickled_module_is_refused_unless_trusted(tmp_path: Path) -> None:
    expected = torch_models.pickled(tmp_path, "pickled")
    folder = tmp_path / "pickled" / "1"
    with pytest.raises(ModelConfigError) as raised:
        load(folder, DECLARED)
    assert "refusing to load model.pth" in str(raised.value)
    assert "runtime_options.trust_pickle: true" in str(raised.value)
    predictor = load(folder, DECLARED, runtime_options={"trust_pickle": True})
    assert predictor.metadata.platform == "pytorch_pickle"
    assert_equals_torch(predict(predictor), expected(ROWS))


def test_a_state_dict_is_weights_not_a_model(tmp_path: Path) -> None:
    folder = builders.version_folder(tmp_path, "weights")
    torch.save(torch_models.module().state_dict(), folder / "model.pt")
    with pytest.raises(ModelConfigError, match="holds only weights"):
        load(folder, DECLARED)


def test_an_exported_program_with_a_pickled_part_is_refused_unless_trusted(
    tmp_path: Path,
) -> None:
    builders.torch_exported(tmp_path, "exported")
    path = tmp_path / "exported" / "1" / "model.pt2"
    # Sample inputs that torch's weights-only unpickler refuses (a UserDict for the keyword
    # arguments): torch.export.load would retry them with the full unpickler.
    payload = io.BytesIO()
    torch.save(((torch.zeros(1, 4),), UserDict()), payload)
    _replace_member(path, "data/sample_inputs/model.pt", payload.getvalue())
    with pytest.raises(ModelConfigError) as raised:
        load(path.parent)
    assert "data/sample_inputs/model.pt (a pickle holding more than tensors)" in str(raised.value)
    trusted = load(path.parent, runtime_options={"trust_pickle": True})
    assert trusted.metadata.platform == "torch_export"


def _replace_member(path: Path, suffix: str, data: bytes) -> None:
    with zipfile.ZipFile(path) as source:
        members = [(info, source.read(info)) for info in source.infolist()]
    with zipfile.ZipFile(path, "w") as target:
        for info, content in members:
            target.writestr(info, data if info.filename.endswith(suffix) else content)


def test_a_file_that_is_not_a_pytorch_archive_is_a_load_error(tmp_path: Path) -> None:
    folder = builders.version_folder(tmp_path, "junk")
    (folder / "model.pt").write_bytes(b"not a zip")
    with pytest.raises(ModelLoadError, match="not a PyTorch file"):
        load(folder, DECLARED)


# -- threads -------------------------------------------------------------------------------


def test_default_threads_divide_the_cores_by_the_calls_at_once() -> None:
    assert default_intra_op_threads(ModelSpec(), cores=16) == 1  # the shared threads
    assert default_intra_op_threads(ModelSpec(concurrency={"limit": 4}), cores=16) == 4
    assert default_intra_op_threads(ModelSpec(max_batch_size=32), cores=16) == 16
    assert default_intra_op_threads(ModelSpec(max_batch_size=32, instances=3), cores=16) == 5
    assert default_intra_op_threads(ModelSpec(instances=32), cores=16) == 1


def test_one_thread_count_serves_the_process() -> None:
    applied: list[int] = []
    threads = IntraOpThreads(applied.append)
    batching, shared, tuned = object(), object(), object()
    assert threads.claim(batching, Wish(16, explicit=False), "a") == 16
    assert threads.claim(shared, Wish(1, explicit=False), "b") == 1  # smallest default
    assert threads.claim(tuned, Wish(4, explicit=True), "c") == 4  # model.yaml wins
    threads.release(tuned)
    assert threads.applied == 1
    threads.release(shared)
    assert applied == [16, 1, 4, 1, 16]
    threads.release(batching)  # the last one leaves torch as it is
    assert threads.applied == 16


def test_a_loaded_model_sets_torch_threads_from_model_yaml(tmp_path: Path) -> None:
    builders.torch_exported(tmp_path, "exported")
    before = torch.get_num_threads()
    predictor = load(tmp_path / "exported" / "1", runtime_options={"intra_op_threads": 1})
    try:
        assert torch.get_num_threads() == 1
    finally:
        predictor.close()
        torch.set_num_threads(before)


def test_models_load_at_once_on_several_threads(tmp_path: Path) -> None:
    # torch.export.load is not reentrant; serval loads versions on several threads.
    for index in range(4):
        torch_models.exported(tmp_path, f"m{index}")
    with ThreadPoolExecutor(4) as pool:
        predictors = list(pool.map(lambda i: load(tmp_path / f"m{i}" / "1"), range(4)))
    assert all(p.metadata.platform == "torch_export" for p in predictors)
    for predictor in predictors:
        predictor.close()
