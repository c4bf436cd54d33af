"""The python runtime in-process (isolation: thread): input formats, async methods, and the
load errors a model author sees."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from serval.core.errors import (
    InvalidInputError,
    ModelConfigError,
    ModelExecutionError,
    ModelLoadError,
)
from serval.core.lifecycle.loader import LoadRequest
from serval.core.model_spec import ModelSpec
from serval.core.servable import Predictor
from serval.core.tensors.datatypes import DataType
from serval.core.types import InferenceRequest, Tensor
from serval.runtimes.python.loader import PythonLoader
from tests.runtimes.builders import write_python_model


def load(tmp_path: Path, source: str, **spec: Any) -> Predictor:
    folder = write_python_model(tmp_path / "m" / "1", source)
    return PythonLoader(LoadRequest("m", 1, folder, ModelSpec(**spec))).load()


def run(predictor: Predictor, *tensors: Tensor, **parameters: Any) -> dict[str, np.ndarray]:
    request = InferenceRequest("m", list(tensors), parameters=parameters)
    return {t.name: t.data for t in predictor.predict(request).outputs}


def texts(*values: bytes) -> Tensor:
    return Tensor("text", DataType.BYTES, np.array(values, dtype=np.object_))


PANDAS = """
    from serval import ServingModel, TensorInfo

    class Model(ServingModel):
        inputs = [TensorInfo("age", "INT64"), TensorInfo("city", "BYTES", [-1, 1])]
        outputs = [TensorInfo("greeting", "BYTES"), TensorInfo("next_age", "INT32")]
        input_format = "pandas"

        def predict(self, frame):
            frame = frame.assign(next_age=frame["age"] + 1)
            frame["greeting"] = "hi " + frame["city"]
            return frame[["greeting", "next_age"]]
"""


def test_pandas_input_and_dataframe_output(tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    predictor = load(tmp_path, PANDAS)
    got = run(
        predictor,
        Tensor("age", DataType.INT64, np.array([30, 41])),
        Tensor("city", DataType.BYTES, np.array([[b"Oslo"], [b"Lima"]], dtype=np.object_)),
    )
    assert got["greeting"].tolist() == [b"hi Oslo", b"hi Lima"]
    assert got["next_age"].dtype == np.int32
    assert got["next_age"].tolist() == [31, 42]


ASYNC = """
    import asyncio
    import threading

    from serval import ServingModel, TensorInfo

    class Model(ServingModel):
        inputs = [TensorInfo("x", "FP32", [-1, 2])]
        outputs = [TensorInfo("y", "FP32", [-1, 2])]

        async def load(self):
            await asyncio.sleep(0)
            self.loop = asyncio.get_running_loop()

        async def predict(self, data):
            assert asyncio.get_running_loop() is self.loop  # one private loop for the model
            await asyncio.sleep(0)
            return data["x"] * 2
"""


def test_async_load_and_predict_run_on_a_private_loop(tmp_path: Path) -> None:
    predictor = load(tmp_path, ASYNC)
    x = np.arange(4, dtype=np.float32).reshape(2, 2)
    np.testing.assert_array_equal(run(predictor, Tensor("x", DataType.FP32, x))["y"], x * 2)
    predictor.close()


ECHO = """
    from serval import ServingModel, TensorInfo

    class Model(ServingModel):
        inputs = [TensorInfo("text", "BYTES")]
        outputs = [TensorInfo("text_out", "BYTES"), TensorInfo("n", "INT64")]
        input_format = "strings"

        def predict(self, data):
            if data["text"] == ["wrong shape"]:
                return {"text_out": [["a", "b"]], "n": [1]}
            if data["text"] == ["missing"]:
                return {"n": [1]}
            return {"text_out": data["text"], "n": [len(t) for t in data["text"]]}
"""


def test_strings_format_decodes_utf8(tmp_path: Path) -> None:
    predictor = load(tmp_path, ECHO)
    got = run(predictor, texts("héllo".encode(), b"ok"))
    assert got["text_out"].tolist() == ["héllo".encode(), b"ok"]
    assert got["n"].tolist() == [5, 2]
    with pytest.raises(InvalidInputError, match="input 'text': an element is not valid UTF-8"):
        run(predictor, texts(b"\xff\xfe"))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (b"wrong shape", "output 'text_out' has shape [1, 2]; the model declares [-1]"),
        (b"missing", "signature 'predict' returned no output 'text_out'"),
    ],
)
def test_outputs_that_break_the_declaration_are_model_errors(
    tmp_path: Path, text: bytes, fragment: str
) -> None:
    predictor = load(tmp_path, ECHO)
    with pytest.raises(ModelExecutionError) as raised:
        run(predictor, texts(text))
    assert "model 'm' version 1" in str(raised.value)
    assert fragment in str(raised.value)


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("x = 1\n", "must define one subclass of serval.ServingModel"),
        ("def broken(:\n", "importing model.py failed: SyntaxError"),
        (
            """
            from serval import ServingModel, TensorInfo
            class Model(ServingModel):
                inputs = [TensorInfo("x", "FLOAT")]
                outputs = [TensorInfo("y", "FP32")]
                def predict(self, data):
                    return data
            """,
            "inputs: 'x' has unknown datatype 'FLOAT'",
        ),
        (
            """
            from serval import ServingModel, TensorInfo
            class Model(ServingModel):
                inputs = [TensorInfo("x", "FP32")]
                outputs = [TensorInfo("y", "FP32")]
            """,
            "Model does not define predict()",
        ),
        (
            """
            from serval import ServingModel, TensorInfo
            class Model(ServingModel):
                inputs = [TensorInfo("x", "FP32", [-1, 3])]
                outputs = [TensorInfo("y", "FP32")]
                input_format = "pandas"
                def predict(self, data):
                    return data
            """,
            "input 'x' must have shape [-1] or [-1, 1]",
        ),
        (
            """
            from serval import ServingModel, TensorInfo
            class Model(ServingModel):
                inputs = [TensorInfo("x", "FP32")]
                outputs = [TensorInfo("y", "FP32")]
                def load(self):
                    raise RuntimeError("weights missing")
                def predict(self, data):
                    return data
            """,
            "Model.load() failed: RuntimeError: weights missing (model.py, line 7)",
        ),
    ],
    ids=["no-class", "syntax", "datatype", "no-predict", "pandas-shape", "load-raises"],
)
def test_load_errors_tell_the_author_what_to_fix(
    tmp_path: Path, source: str, fragment: str
) -> None:
    with pytest.raises(ModelLoadError) as raised:
        load(tmp_path, source)
    assert fragment in str(raised.value)


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"runtime_options": {"workers": 2}}, "workers need isolation: process"),
        ({"runtime_options": {"isolation": "fork"}}, "runtime_options: isolation"),
        ({"inputs": [{"name": "x", "datatype": "FP32"}]}, "declares its inputs and outputs"),
    ],
)
def test_model_yaml_mistakes_are_config_errors(
    tmp_path: Path, spec: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(ModelConfigError) as raised:
        load(tmp_path, ECHO, **spec)
    assert fragment in str(raised.value)
