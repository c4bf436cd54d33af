"""TF Serving's V1 REST API against the real server, with httpx."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest

from serval.core.tensors.datatypes import DataType
from serval.testing import run_server
from tests.e2e.tfserving_models import SHOUT
from tests.onnx_models import add_sub, classifier, identity, linear, write_model
from tests.runtimes.builders import write_python_model

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    repo = tmp_path_factory.mktemp("repo")
    write_model(repo, "linear", 1, linear([1.0, 2.0], 0.0))
    write_model(repo, "linear", 2, linear([10.0, 20.0], 1.0))
    (repo / "linear" / "model.yaml").write_text(
        "version_policy: {latest: 2}\nlabels: {stable: 1, canary: 2}\n"
    )
    write_model(repo, "simple", 1, add_sub())
    write_model(repo, "text", 1, identity(DataType.BYTES))
    write_model(repo, "classifier", 1, classifier())
    write_python_model(repo / "shout" / "1", SHOUT)
    with (
        run_server(repo, grpc=False) as server,
        httpx.Client(base_url=server.http_url, timeout=10) as client,
    ):
        yield client


def test_row_format_single_input(http: httpx.Client) -> None:
    response = http.post("/v1/models/linear:predict", json={"instances": [[1, 1], [0, 1]]})
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": [[31.0], [21.0]]}


def test_fp32_outputs_keep_their_short_form(http: httpx.Client) -> None:
    response = http.post("/v1/models/linear/versions/1:predict", json={"instances": [[0.1, 0]]})
    assert response.text == '{"predictions":[[0.1]]}'


def test_versions_and_labels(http: httpx.Client) -> None:
    body = {"instances": [[1, 1]]}
    assert http.post("/v1/models/linear/versions/1:predict", json=body).json() == {
        "predictions": [[3.0]]
    }
    assert http.post("/v1/models/linear/labels/stable:predict", json=body).json() == {
        "predictions": [[3.0]]
    }
    assert http.post("/v1/models/linear/labels/canary:predict", json=body).json() == {
        "predictions": [[31.0]]
    }


def test_columnar_format(http: httpx.Client) -> None:
    response = http.post("/v1/models/linear/versions/1:predict", json={"inputs": [[1, 2], [3, 4]]})
    assert response.json() == {"outputs": [[5.0], [11.0]]}
    response = http.post("/v1/models/linear/versions/1:predict", json={"inputs": {"x": [[1, 2]]}})
    assert response.json() == {"outputs": [[5.0]]}


def test_multiple_inputs_and_outputs(http: httpx.Client) -> None:
    a, b = list(range(16)), [1] * 16
    rows = http.post(
        "/v1/models/simple:predict", json={"instances": [{"INPUT0": a, "INPUT1": b}]}
    ).json()
    assert rows == {"predictions": [{"OUTPUT0": [x + 1 for x in a], "OUTPUT1": [x - 1 for x in a]}]}
    columns = http.post(
        "/v1/models/simple:predict", json={"inputs": {"INPUT0": [a], "INPUT1": [b]}}
    ).json()
    assert columns == {
        "outputs": {"OUTPUT0": [[x + 1 for x in a]], "OUTPUT1": [[x - 1 for x in a]]}
    }


def test_int64_output_of_a_classifier_in_both_formats(http: httpx.Client) -> None:
    # onnxruntime returns the INT64 label as numpy.longlong, which once made rows a 500.
    rows = http.post("/v1/models/classifier:predict", json={"instances": [[0, 9], [9, 0]]})
    assert rows.status_code == 200, rows.text
    predictions = rows.json()["predictions"]
    assert [p["label"] for p in predictions] == [1, 0]
    assert predictions[0]["probabilities"] == pytest.approx([0.0001234, 0.9998766], abs=1e-6)
    named = http.post("/v1/models/classifier:predict", json={"instances": [{"x": [2, 1]}]})
    assert named.status_code == 200, named.text
    assert named.json()["predictions"][0]["label"] == 0
    columns = http.post("/v1/models/classifier:predict", json={"inputs": [[0, 9], [9, 0]]})
    assert columns.status_code == 200, columns.text
    assert columns.json()["outputs"]["label"] == [1, 0]
    columns = http.post("/v1/models/classifier:predict", json={"inputs": {"x": [[3, 4]]}})
    assert columns.json()["outputs"]["label"] == [1]


def test_b64_strings(http: httpx.Client) -> None:
    encoded = base64.b64encode(b"caf\xc3\xa9").decode()
    response = http.post(
        "/v1/models/text:predict", json={"instances": [[{"b64": encoded}, "plain"]]}
    )
    assert response.json() == {"predictions": [["café", "plain"]]}


def test_status_and_metadata(http: httpx.Client) -> None:
    status = http.get("/v1/models/linear").json()
    assert status["model_version_status"] == [
        {"version": "2", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
    ]
    assert status["ready"] is True
    one = http.get("/v1/models/linear/labels/stable").json()["model_version_status"]
    assert [s["version"] for s in one] == ["1"]
    meta = http.get("/v1/models/linear/versions/1/metadata").json()
    assert meta["model_spec"] == {"name": "linear", "signature_name": "", "version": "1"}
    signature = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["inputs"]["x"]["dtype"] == "DT_FLOAT"
    assert signature["inputs"]["x"]["tensor_shape"]["dim"] == [
        {"size": "-1", "name": ""},
        {"size": "2", "name": ""},
    ]
    assert http.get("/v1/models").json() == {
        "models": ["classifier", "linear", "shout", "simple", "text"]
    }


def test_signature_name_selects_a_python_signature(http: httpx.Client) -> None:
    for name in ("serving_default", "predict", ""):
        body = {"signature_name": name, "instances": ["hi", "hello"]}
        response = http.post("/v1/models/shout:predict", json=body)
        assert response.json() == {"predictions": ["HI!", "HELLO!"]}, response.text
    body = {"signature_name": "length", "instances": ["hi", "hello"]}
    assert http.post("/v1/models/shout:predict", json=body).json() == {"predictions": [2, 5]}


@pytest.mark.parametrize(("model", "instances"), [("shout", ["hi"]), ("linear", [[1, 1]])])
def test_an_unknown_signature_name_is_a_400(
    http: httpx.Client, model: str, instances: list[object]
) -> None:
    body = {"signature_name": "classify_it", "instances": instances}
    response = http.post(f"/v1/models/{model}:predict", json=body)
    assert response.status_code == 400
    assert "classify_it" in response.json()["error"]
    response = http.post(f"/v1/models/{model}:predict", json={**body, "signature_name": 3})
    assert response.status_code == 400


def test_metadata_lists_the_signatures(http: httpx.Client) -> None:
    meta = http.get("/v1/models/shout/metadata").json()
    signatures = meta["metadata"]["signature_def"]["signature_def"]
    assert sorted(signatures) == ["length", "serving_default"]
    assert signatures["length"]["inputs"]["text"]["dtype"] == "DT_STRING"
