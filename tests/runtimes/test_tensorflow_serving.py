"""TensorFlow models served by the real server, checked against TensorFlow in-process over V2
JSON, V2 binary, V2 gRPC, V1 REST and TF Serving's gRPC API: signature selection by
``signature_name``, the real signature defs in the metadata, the missing-signature and
wrong-dtype errors, and batching under concurrent clients."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from serval.protocols.grpc.generated.tensorflow.core.framework import tensor_pb2, types_pb2
from serval.protocols.grpc.generated.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from serval.testing import RunningServer, run_server
from tests.runtimes import tf_builders

pytestmark = pytest.mark.e2e

# Every model of the repository answers `serving_default` with the same MLP's `scores`.
MLPS = ("savedmodel", "triton", "keras")
BATCHED = "batched"
CLIENTS = 16
ROUNDS = 4


@dataclass
class Served:
    server: RunningServer
    answers: dict[str, tf_builders.Answers]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    pytest.importorskip("tensorflow")
    repo = tmp_path_factory.mktemp("repo")
    answers = {
        "savedmodel": tf_builders.tf_serving_layout(repo, "savedmodel"),
        "triton": tf_builders.triton_layout(repo, "triton"),
        "keras": tf_builders.keras_file(repo, "keras"),
        "nodefault": tf_builders.tf_serving_layout(repo, "nodefault", default=False),
        BATCHED: tf_builders.tf_serving_layout(repo, BATCHED),
    }
    (repo / BATCHED / "model.yaml").write_text(
        "max_batch_size: 16\ndynamic_batching: {max_queue_delay_us: 20000}\n"
        "runtime_options: {intra_op_threads: 1, inter_op_threads: 1}\n"
    )
    with run_server(repo, ready_timeout_s=180) as server:
        yield Served(server, answers)


@pytest.fixture
def http(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.server.http_url, timeout=60) as client:
        yield client


def scores(served: Served, model: str, rows: np.ndarray) -> np.ndarray:
    return served.answers[model]["serving_default"]({"features": rows})["scores"]


@pytest.mark.parametrize("model", MLPS)
def test_v2_json_equals_tensorflow(model: str, served: Served, http: httpx.Client) -> None:
    rows = tf_builders.features(5, seed=1)
    body = {
        "inputs": [
            {"name": "features", "datatype": "FP32", "shape": [5, 4], "data": rows.tolist()}
        ],
        "outputs": [{"name": "scores"}],
    }
    reply = http.post(f"/v2/models/{model}/infer", json=body)
    assert reply.status_code == 200, reply.text
    (output,) = reply.json()["outputs"]
    assert output["shape"] == [5, 3]
    got = np.asarray(output["data"], dtype=np.float32).reshape(5, 3)
    np.testing.assert_allclose(got, scores(served, model, rows), rtol=1e-6)


@pytest.mark.parametrize("model", MLPS)
def test_v2_binary_equals_tensorflow(model: str, served: Served) -> None:
    rows = tf_builders.features(6, seed=2)
    with httpclient.InferenceServerClient(served.server.http_address) as client:
        tensor = httpclient.InferInput("features", [6, 4], "FP32")
        tensor.set_data_from_numpy(rows, binary_data=True)
        wanted = [httpclient.InferRequestedOutput("scores", binary_data=True)]
        result = client.infer(model, [tensor], outputs=wanted)
    np.testing.assert_array_equal(result.as_numpy("scores"), scores(served, model, rows))


@pytest.mark.parametrize("model", MLPS)
def test_v2_grpc_equals_tensorflow(model: str, served: Served) -> None:
    rows = tf_builders.features(3, seed=3)
    with grpcclient.InferenceServerClient(served.server.grpc_address) as client:
        tensor = grpcclient.InferInput("features", [3, 4], "FP32")
        tensor.set_data_from_numpy(rows)
        result = client.infer(model, [tensor], outputs=[grpcclient.InferRequestedOutput("scores")])
    np.testing.assert_array_equal(result.as_numpy("scores"), scores(served, model, rows))


@pytest.mark.parametrize("model", MLPS)
def test_v1_rest_rows_and_columns_equal_tensorflow(
    model: str, served: Served, http: httpx.Client
) -> None:
    rows = tf_builders.features(4, seed=4)
    want = scores(served, model, rows)
    body: dict[str, Any] = {"instances": rows.tolist()}
    if model != "keras":  # the SavedModels have a second output, `best`
        body = {"instances": [{"features": row} for row in rows.tolist()]}
    reply = http.post(f"/v1/models/{model}:predict", json=body)
    assert reply.status_code == 200, reply.text
    predictions = reply.json()["predictions"]
    got = [p["scores"] for p in predictions] if model != "keras" else predictions
    np.testing.assert_allclose(np.asarray(got, dtype=np.float32), want, rtol=1e-6)

    reply = http.post(f"/v1/models/{model}:predict", json={"inputs": {"features": rows.tolist()}})
    assert reply.status_code == 200, reply.text
    outputs = reply.json()["outputs"]
    got = outputs["scores"] if model != "keras" else outputs
    np.testing.assert_allclose(np.asarray(got, dtype=np.float32), want, rtol=1e-6)


def test_v1_signature_name_selects_a_signature_def_with_strings(
    served: Served, http: httpx.Client
) -> None:
    texts = ["abc", "é b", ""]
    body = {"signature_name": "length", "inputs": {"text": texts}}
    reply = http.post("/v1/models/savedmodel:predict", json=body)
    assert reply.status_code == 200, reply.text
    want = served.answers["savedmodel"]["length"]({"text": np.array(texts, dtype=object)})
    outputs = reply.json()["outputs"]
    assert outputs["length"] == want["length"].tolist() == [3, 3, 0]
    assert outputs["upper"] == [value.decode() for value in want["upper"]]


def test_v2_signature_parameter_selects_a_signature_def(http: httpx.Client) -> None:
    body = {
        "parameters": {"signature": "length"},
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["hé", "x"]}],
    }
    reply = http.post("/v2/models/savedmodel/infer", json=body)
    assert reply.status_code == 200, reply.text
    outputs = {o["name"]: o for o in reply.json()["outputs"]}
    assert outputs["length"]["datatype"] == "INT32"
    assert outputs["length"]["data"] == [2, 1]
    assert outputs["upper"]["datatype"] == "BYTES"
    assert outputs["upper"]["data"] == ["HÉ", "X"]


@pytest.fixture
def tf_serving(served: Served) -> Iterator[prediction_service_pb2_grpc.PredictionServiceStub]:
    with grpc.insecure_channel(served.server.grpc_address) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def test_tf_serving_grpc_signature_name_selects_a_signature_def(
    tf_serving: prediction_service_pb2_grpc.PredictionServiceStub,
) -> None:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "savedmodel"
    request.model_spec.signature_name = "length"
    text = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[b"four", b"\xc3\xa9"])
    text.tensor_shape.dim.add(size=2)
    request.inputs["text"].CopyFrom(text)
    reply = tf_serving.Predict(request, timeout=30)
    assert reply.model_spec.signature_name == "length"
    assert reply.outputs["length"].dtype == types_pb2.DT_INT32
    assert list(reply.outputs["length"].int_val) == [4, 1]
    assert list(reply.outputs["upper"].string_val) == [b"FOUR", "É".encode()]


def test_tf_serving_grpc_predict_equals_tensorflow(
    served: Served, tf_serving: prediction_service_pb2_grpc.PredictionServiceStub
) -> None:
    rows = tf_builders.features(2, seed=5)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "savedmodel"
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_content=rows.tobytes())
    for size in rows.shape:
        proto.tensor_shape.dim.add(size=size)
    request.inputs["features"].CopyFrom(proto)
    reply = tf_serving.Predict(request, timeout=30)
    got = reply.outputs["scores"]
    values = np.frombuffer(got.tensor_content, np.float32) if got.tensor_content else got.float_val
    np.testing.assert_allclose(
        np.asarray(values, dtype=np.float32).reshape(2, 3),
        scores(served, "savedmodel", rows),
        rtol=1e-6,
    )


def test_v1_metadata_returns_the_real_signature_defs(http: httpx.Client) -> None:
    reply = http.get("/v1/models/savedmodel/metadata")
    assert reply.status_code == 200, reply.text
    defs = reply.json()["metadata"]["signature_def"]["signature_def"]
    assert set(defs) == {"serving_default", "length"}
    default, length = defs["serving_default"], defs["length"]
    assert default["method_name"] == "tensorflow/serving/predict"
    assert set(default["inputs"]) == {"features"}
    assert default["inputs"]["features"]["dtype"] == "DT_FLOAT"
    dims = default["inputs"]["features"]["tensor_shape"]["dim"]
    assert [d["size"] for d in dims] == ["-1", "4"]
    assert set(default["outputs"]) == {"scores", "best"}
    assert default["outputs"]["best"]["dtype"] == "DT_INT64"
    assert set(length["inputs"]) == {"text"}
    assert length["inputs"]["text"]["dtype"] == "DT_STRING"
    assert {name: o["dtype"] for name, o in length["outputs"].items()} == {
        "length": "DT_INT32",
        "upper": "DT_STRING",
    }


def test_v2_metadata_shows_the_default_signature_and_lists_them_all(http: httpx.Client) -> None:
    meta = http.get("/v2/models/savedmodel").json()
    assert meta["platform"] == "tensorflow_savedmodel"
    assert meta["signatures"] == ["serving_default", "length"]
    assert meta["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}]
    assert {o["name"] for o in meta["outputs"]} == {"scores", "best"}
    keras = http.get("/v2/models/keras").json()
    assert keras["platform"] == "tensorflow_keras"
    assert keras["outputs"] == [{"name": "scores", "datatype": "FP32", "shape": [-1, 3]}]


def test_tf_serving_grpc_metadata_returns_the_real_signature_defs(
    tf_serving: prediction_service_pb2_grpc.PredictionServiceStub,
) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "nodefault"
    reply = tf_serving.GetModelMetadata(request, timeout=30)
    found = get_model_metadata_pb2.SignatureDefMap()
    reply.metadata["signature_def"].Unpack(found)
    assert set(found.signature_def) == {"scores", "length"}
    assert set(found.signature_def["scores"].inputs) == {"features"}
    assert set(found.signature_def["length"].inputs) == {"text"}
    assert found.signature_def["length"].inputs["text"].dtype == types_pb2.DT_STRING


def test_without_serving_default_a_request_naming_none_is_a_400_listing_them(
    served: Served, http: httpx.Client
) -> None:
    rows = tf_builders.features(2, seed=6)
    reply = http.post("/v1/models/nodefault:predict", json={"inputs": {"features": rows.tolist()}})
    assert reply.status_code == 400, reply.text
    assert "length, scores" in reply.json()["error"]
    v2 = {
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [2, 4], "data": rows.tolist()}]
    }
    reply = http.post("/v2/models/nodefault/infer", json=v2)
    assert reply.status_code == 400, reply.text
    assert "no default signature" in reply.json()["error"]
    assert "length, scores" in reply.json()["error"]

    body = {"signature_name": "scores", "inputs": {"features": rows.tolist()}}
    reply = http.post("/v1/models/nodefault:predict", json=body)
    assert reply.status_code == 200, reply.text
    want = served.answers["nodefault"]["scores"]({"features": rows})["scores"]
    got = np.asarray(reply.json()["outputs"]["scores"], dtype=np.float32)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_an_unknown_signature_name_is_a_400_listing_them(http: httpx.Client) -> None:
    body = {"signature_name": "nope", "instances": [[0.0, 0.0, 0.0, 0.0]]}
    reply = http.post("/v1/models/savedmodel:predict", json=body)
    assert reply.status_code == 400, reply.text
    assert "serving_default, length" in reply.json()["error"]


def test_a_wrong_dtype_or_shape_is_a_400_naming_the_tensor(http: httpx.Client) -> None:
    body = {"inputs": [{"name": "features", "datatype": "FP64", "shape": [1, 4], "data": [0] * 4}]}
    reply = http.post("/v2/models/savedmodel/infer", json=body)
    assert reply.status_code == 400, reply.text
    assert "input 'features': expected datatype FP32" in reply.json()["error"]
    body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 3], "data": [0] * 3}]}
    reply = http.post("/v2/models/savedmodel/infer", json=body)
    assert reply.status_code == 400, reply.text
    assert "input 'features': expected shape [-1, 4]" in reply.json()["error"]


def test_concurrent_clients_are_batched_and_get_their_own_rows(
    served: Served, http: httpx.Client
) -> None:
    before = _stats(http, BATCHED)

    def client(index: int) -> int:
        with httpx.Client(base_url=served.server.http_url, timeout=60) as own:
            for round_ in range(ROUNDS):
                rows = tf_builders.features(1 + (index + round_) % 3, seed=100 * index + round_)
                body = {"instances": [{"features": row} for row in rows.tolist()]}
                reply = own.post(f"/v1/models/{BATCHED}:predict", json=body)
                assert reply.status_code == 200, reply.text
                got = np.asarray([p["scores"] for p in reply.json()["predictions"]], np.float32)
                np.testing.assert_allclose(got, scores(served, BATCHED, rows), rtol=1e-5)
        return ROUNDS

    with ThreadPoolExecutor(CLIENTS) as pool:
        requests = sum(pool.map(client, range(CLIENTS)))
    after = _stats(http, BATCHED)
    count = (
        after["inference_stats"]["success"]["count"] - before["inference_stats"]["success"]["count"]
    )
    assert count == requests
    assert after["execution_count"] - before["execution_count"] < requests
    assert max(entry["batch_size"] for entry in after["batch_stats"]) > 1


def _stats(http: httpx.Client, model: str) -> dict[str, Any]:
    reply = http.get(f"/v2/models/{model}/stats")
    assert reply.status_code == 200, reply.text
    stats: dict[str, Any] = reply.json()["model_stats"][0]
    return stats


def test_b64_strings_over_v1_rest(http: httpx.Client) -> None:
    encoded = base64.b64encode(b"abc").decode()
    body = {"signature_name": "length", "instances": [{"text": {"b64": encoded}}]}
    reply = http.post("/v1/models/savedmodel:predict", json=body)
    assert reply.status_code == 200, reply.text
    assert reply.json()["predictions"] == [{"length": 3, "upper": "ABC"}]
