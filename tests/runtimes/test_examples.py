"""examples/build_runtime_examples.py builds a model per runtime, and each one loads."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from serval.core.lifecycle.loader import LoadRequest
from serval.core.lifecycle.source import FileSystemSource
from serval.core.tensors.datatypes import DataType
from serval.core.types import InferenceRequest, Tensor
from serval.runtimes.registry import RuntimeRegistry

SCRIPT = Path(__file__).parents[2] / "examples" / "build_runtime_examples.py"


def test_runtime_examples_build_and_load(tmp_path: Path) -> None:
    for module in ("sklearn", "skops", "xgboost", "lightgbm", "pandas"):
        pytest.importorskip(module)
    spec = importlib.util.spec_from_file_location("build_runtime_examples", SCRIPT)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(tmp_path)

    models = FileSystemSource(tmp_path).scan()
    assert sorted(models) == ["lightgbm", "python", "sklearn", "xgboost"]
    registry = RuntimeRegistry.default()
    for name, model in models.items():
        assert model.spec is not None, model.config_error
        predictor = registry(LoadRequest(name, 1, model.versions[1].path, model.spec)).load()
        try:
            first = predictor.metadata.inputs[0]
            if first.datatype is DataType.BYTES:
                data = np.array([b"a good day"], dtype=np.object_)
            else:
                data = np.ones((1, first.shape[1]), dtype=first.datatype.numpy_dtype)
            response = predictor.predict(
                InferenceRequest(name, [Tensor(first.name, first.datatype, data)])
            )
            assert response.outputs
        finally:
            predictor.close()
