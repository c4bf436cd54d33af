"""Against the real server: the version that answered on every REST inference response
(``x-model-version``), the V2 ``model_version`` on REST and gRPC, and the feedback API
matched by the request ids of real responses."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.grpc as grpcclient

from serval.protocols.rest.feedback import MAX_FEEDBACK_ITEMS
from serval.testing import RunningServer, run_server
from tests.onnx_models import linear, write_model

pytestmark = pytest.mark.e2e

ROW = [[1.0, 2.0]]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repo = tmp_path_factory.mktemp("repo")
    write_model(repo, "linear", 1, linear([1.0, 2.0], 0.0))
    write_model(repo, "linear", 2, linear([1.0, 2.0], 1.0))
    (repo / "linear" / "model.yaml").write_text("version_policy: all\nlabels: {stable: 1}\n")
    with run_server(repo) as running:
        yield running


@pytest.fixture(scope="module")
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_url, timeout=10) as client:
        yield client


def _json_body(**fields: object) -> dict[str, object]:
    x = {"name": "x", "datatype": "FP32", "shape": [1, 2], "data": ROW}
    return {"inputs": [x], **fields}


def test_v2_json_names_the_version_in_its_header_and_body(http: httpx.Client) -> None:
    latest = http.post("/v2/models/linear/infer", json=_json_body())
    assert latest.status_code == 200
    assert latest.headers["x-model-version"] == "2" == latest.json()["model_version"]
    pinned = http.post("/v2/models/linear/versions/1/infer", json=_json_body())
    assert pinned.headers["x-model-version"] == "1" == pinned.json()["model_version"]


def test_v2_binary_names_the_version(http: httpx.Client) -> None:
    header = orjson.dumps(
        {
            "inputs": [
                {"name": "x", "datatype": "FP32", "shape": [1, 2]}
                | {"parameters": {"binary_data_size": 8}}
            ],
            "parameters": {"binary_data_output": True},
        }
    )
    reply = http.post(
        "/v2/models/linear/versions/1/infer",
        content=header + np.array(ROW, np.float32).tobytes(),
        headers={"inference-header-content-length": str(len(header))},
    )
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/octet-stream"
    assert reply.headers["x-model-version"] == "1"
    length = int(reply.headers["inference-header-content-length"])
    assert orjson.loads(reply.content[:length])["model_version"] == "1"


def test_v1_names_the_version_by_url_label_and_default(http: httpx.Client) -> None:
    body = {"instances": ROW}
    for path, version in (
        ("/v1/models/linear:predict", "2"),
        ("/v1/models/linear/versions/1:predict", "1"),
        ("/v1/models/linear/labels/stable:predict", "1"),
    ):
        reply = http.post(path, json=body)
        assert reply.status_code == 200, reply.text
        assert reply.headers["x-model-version"] == version, path


def test_errors_on_a_chosen_version_name_it_and_others_do_not(http: httpx.Client) -> None:
    wrong = {"inputs": [{"name": "x", "datatype": "INT64", "shape": [1, 2], "data": [1, 2]}]}
    reply = http.post("/v2/models/linear/versions/1/infer", json=wrong)
    assert reply.status_code == 400
    assert reply.headers["x-model-version"] == "1"
    v1 = http.post("/v1/models/linear/versions/1:predict", json={"instances": [[1.0]]})
    assert v1.status_code == 400 and v1.headers["x-model-version"] == "1"
    unknown = http.post("/v2/models/linear/versions/9/infer", json=_json_body())
    assert unknown.status_code == 404 and "x-model-version" not in unknown.headers


def test_grpc_sets_model_version(server: RunningServer) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_address)
    x = grpcclient.InferInput("x", [1, 2], "FP32")
    x.set_data_from_numpy(np.array(ROW, np.float32))
    assert client.infer("linear", [x]).get_response().model_version == "2"
    pinned = client.infer("linear", [x], model_version="1").get_response()
    assert pinned.model_version == "1"
    client.close()


def test_feedback_matches_the_ids_of_real_responses(http: httpx.Client) -> None:
    by_v2_id = http.post("/v2/models/linear/infer", json=_json_body(id="fb-body-1"))
    by_header = http.post(
        "/v1/models/linear:predict", json={"instances": ROW}, headers={"x-request-id": "fb-h-1"}
    )
    assigned = http.post("/v2/models/linear/versions/1/infer", json=_json_body()).json()["id"]
    assert by_v2_id.status_code == by_header.status_code == 200

    single = http.post("/v2/models/linear/feedback", json={"id": "fb-body-1", "reward": 1})
    assert single.status_code == 200
    assert single.json() == {"accepted": 1, "matched": 1}
    items = [
        {"id": "fb-h-1", "reward": 0.5},
        {"id": assigned, "ground_truth": [3.0]},
        {"id": "never-seen", "reward": 0.0, "ground_truth": {"label": "cat"}},
    ]
    listed = http.post("/v2/models/linear/feedback", json={"items": items})
    assert listed.status_code == 200
    assert listed.json() == {"accepted": 3, "matched": 2}
    assert listed.headers["x-request-id"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"id": "r", "reward": "high"}, "reward: must be a number"),
        ({"items": [{"id": "r", "reward": 1}, {"id": "r", "reward": True}]}, "items[1].reward"),
        ({"id": "r"}, "reward: a reward or a ground_truth is required"),
        ({"reward": 1.0}, "id: must be the request id"),
        ({"items": []}, "items: must be a non-empty list"),
        ({"items": ["r"]}, "items[0]: must be an object"),
        ({"items": [{"id": "r", "reward": 1, "score": 2}]}, "items[0].score: unknown field"),
        ({"items": [{"id": "r", "reward": 1}], "id": "r"}, "id: not allowed beside 'items'"),
    ],
)
def test_malformed_feedback_is_a_400_naming_the_field(
    http: httpx.Client, body: dict[str, object], message: str
) -> None:
    reply = http.post("/v2/models/linear/feedback", json=body)
    assert reply.status_code == 400
    assert message in reply.json()["error"]


def test_feedback_bounds_and_unknown_models(http: httpx.Client) -> None:
    not_json = http.post("/v2/models/linear/feedback", content=b"{nope")
    assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["error"]
    unknown = http.post("/v2/models/nope/feedback", json={"id": "r", "reward": 1})
    assert unknown.status_code == 404 and "nope" in unknown.json()["error"]
    many = {"items": [{"id": "r", "reward": 1}] * (MAX_FEEDBACK_ITEMS + 1)}
    too_many = http.post("/v2/models/linear/feedback", json=many)
    assert too_many.status_code == 413 and "items: at most" in too_many.json()["error"]
    assert http.get("/v2/models/linear/feedback").status_code == 405


def test_feedback_and_requests_are_counted_in_metrics(http: httpx.Client) -> None:
    http.post("/v2/models/linear/infer", json=_json_body(id="fb-metrics"))
    http.post("/v2/models/linear/feedback", json={"items": [{"id": "fb-metrics", "reward": 1}]})
    text = http.get("/metrics").text
    assert 'serval_feedback_items_total{model="linear"}' in text
    assert 'serval_feedback_matched_total{model="linear"}' in text
    assert "serval_shadow_requests_total" in text  # declared, empty without a shadow policy
