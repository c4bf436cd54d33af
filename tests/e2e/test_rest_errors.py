"""Every client mistake gets its status code and a message that names the problem."""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Iterator

import httpx
import orjson
import pytest

from serval.core.tensors.datatypes import DataType
from serval.testing import RunningServer, run_server
from tests.onnx_models import identity, linear, write_model

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repo = tmp_path_factory.mktemp("repo")
    write_model(repo, "linear", 1, linear([1.0, 2.0], 0.0))
    write_model(repo, "ints", 1, identity(DataType.INT8))
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "1" / "model.onnx").write_bytes(b"this is not an onnx file")
    with run_server(
        repo, "--max-request-bytes", "65536", "--strict-readiness", "false", grpc=False
    ) as running:
        yield running


@pytest.fixture
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_url, timeout=10) as client:
        yield client


def infer_body(**fields: object) -> dict:
    tensor = {"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1.0, 2.0]}
    tensor.update(fields)
    return {"inputs": [tensor]}


def expect(response: httpx.Response, status: int, *fragments: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    message = response.json()["error"]
    for fragment in fragments:
        assert fragment in message, message


CASES = [
    ("malformed JSON", b'{"inputs": [', 400, ["not valid JSON"]),
    ("not an object", b"[]", 400, ["must be a JSON object"]),
    ("no inputs", orjson.dumps({"inputs": []}), 400, ["'inputs' must be a non-empty list"]),
    (
        "unknown datatype",
        orjson.dumps(infer_body(datatype="FLOAT")),
        400,
        ["input 'x' datatype", "unknown datatype 'FLOAT'"],
    ),
    (
        "data length vs shape",
        orjson.dumps(infer_body(shape=[2, 2])),
        400,
        ["input 'x'", "shape [2, 2] needs 4 elements, data has 2"],
    ),
    (
        "non-numeric data",
        orjson.dumps(infer_body(data=["a", "b"])),
        400,
        ["input 'x'", "FP32 data must be numbers"],
    ),
    (
        "wrong shape for model",
        orjson.dumps(infer_body(shape=[1, 1], data=[1.0])),
        400,
        ["input 'x'", "expected shape [-1, 2]", "received [1, 1]"],
    ),
    (
        "wrong datatype for model",
        orjson.dumps(infer_body(datatype="FP64")),
        400,
        ["input 'x'", "expected datatype FP32", "received FP64"],
    ),
    ("unknown input", orjson.dumps(infer_body(name="z")), 400, ["unknown input 'z'", "x"]),
    (
        "unknown output",
        orjson.dumps({**infer_body(), "outputs": [{"name": "nope"}]}),
        400,
        ["unknown output 'nope'"],
    ),
    (
        "bad shape value",
        orjson.dumps(infer_body(shape=[1, "2"])),
        400,
        ["shape must be a list of non-negative integers"],
    ),
]


@pytest.mark.parametrize(("case", "body", "status", "fragments"), CASES, ids=[c[0] for c in CASES])
def test_infer_client_mistakes(
    http: httpx.Client, case: str, body: bytes, status: int, fragments: list[str]
) -> None:
    expect(http.post("/v2/models/linear/infer", content=body), status, *fragments)


def test_truncated_binary_body(http: httpx.Client) -> None:
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "FP32",
                    "shape": [1, 2],
                    "parameters": {"binary_data_size": 8},
                }
            ]
        }
    )
    response = http.post(
        "/v2/models/linear/infer",
        content=header + struct.pack("<f", 1.0),
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    expect(response, 400, "input 'x'", "binary_data_size is 8 bytes but only 4")
    response = http.post(
        "/v2/models/linear/infer",
        content=header,
        headers={"Inference-Header-Content-Length": "9999"},
    )
    expect(response, 400, "Inference-Header-Content-Length 9999 exceeds")


def test_integer_out_of_range(http: httpx.Client) -> None:
    body = {"inputs": [{"name": "INPUT0", "datatype": "INT8", "shape": [1, 1], "data": [1000]}]}
    expect(http.post("/v2/models/ints/infer", json=body), 400, "outside the range of INT8")


def test_unknown_model_and_version(http: httpx.Client) -> None:
    expect(http.post("/v2/models/nope/infer", json=infer_body()), 404, "unknown model 'nope'")
    expect(http.get("/v2/models/nope"), 404, "unknown model 'nope'")
    expect(
        http.post("/v2/models/linear/versions/4/infer", json=infer_body()),
        404,
        "model 'linear' has no version 4",
    )
    expect(http.get("/v2/models/linear/versions/4"), 404, "no version 4")
    expect(http.get("/v2/models/nope/ready"), 404, "unknown model")
    expect(http.get("/v2/models/linear/versions/x1"), 400, "positive integer")
    expect(http.get("/v2/nothing/here"), 404, "no such endpoint")
    assert http.put("/v2/health/live").status_code == 405


def test_failed_model_is_unavailable_with_reason(http: httpx.Client) -> None:
    response = http.post("/v2/models/broken/infer", json=infer_body())
    expect(response, 503, "model 'broken' has no available version")
    assert response.headers["retry-after"] == "1"
    rows = http.post("/v2/repository/index").json()
    (broken,) = [r for r in rows if r["name"] == "broken"]
    # UNAVAILABLE, or LOADING while a retry runs; either way the reason names the failure.
    assert broken["state"] in ("UNAVAILABLE", "LOADING")
    assert "Protobuf parsing failed" in broken["reason"] or "INVALID_PROTOBUF" in broken["reason"]
    expect(http.post("/v2/repository/models/broken/load"), 400, "failed to load model 'broken'")


def test_body_limit(http: httpx.Client) -> None:
    big = orjson.dumps(infer_body(shape=[1, 40000], data=[0.5] * 40000))
    expect(http.post("/v2/models/linear/infer", content=big), 413, "exceeds the limit of 65536")

    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b" " * 8192

    expect(http.post("/v2/models/linear/infer", content=chunks()), 413, "exceeds the limit")
    bomb = gzip.compress(b" " * 200_000)
    expect(
        http.post("/v2/models/linear/infer", content=bomb, headers={"Content-Encoding": "gzip"}),
        413,
        "exceeds the limit",
    )


def test_gzip_request_body(http: httpx.Client) -> None:
    body = gzip.compress(orjson.dumps(infer_body()))
    response = http.post(
        "/v2/models/linear/infer", content=body, headers={"Content-Encoding": "gzip"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == [5.0]
    raw_deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    body = raw_deflate.compress(orjson.dumps(infer_body())) + raw_deflate.flush()
    response = http.post(
        "/v2/models/linear/infer", content=body, headers={"Content-Encoding": "deflate"}
    )
    assert response.status_code == 200, response.text
    expect(
        http.post(
            "/v2/models/linear/infer", content=b"garbage", headers={"Content-Encoding": "gzip"}
        ),
        400,
        "not valid gzip",
    )
    expect(
        http.post("/v2/models/linear/infer", content=b"x", headers={"Content-Encoding": "br"}),
        400,
        "'br' is not supported",
    )


def test_repository_mistakes(http: httpx.Client) -> None:
    expect(http.post("/v2/repository/index", content=b"{"), 400, "not valid JSON")
    expect(http.post("/v2/repository/index", json={"ready": "yes"}), 400, "'ready'")
    expect(http.post("/v2/repository/models/nope/unload"), 404, "'nope' is not loaded")
    expect(
        http.post("/v2/repository/models/linear/load", json={"parameters": {"config": "{oops"}}),
        400,
        "load parameter 'config' is not valid JSON",  # the same words as over gRPC
    )
    expect(
        http.post(
            "/v2/repository/models/linear/load",
            json={"parameters": {"config": '{"max_batch_size": -2}'}},
        ),
        400,
        "max_batch_size",
    )
    expect(
        http.post(
            "/v2/repository/models/linear/load", json={"parameters": {"file:1/model.onnx": "AAAA"}}
        ),
        400,
        "file overrides",
    )


def test_stats_unknown(http: httpx.Client) -> None:
    expect(http.get("/v2/models/nope/stats"), 404, "unknown model")
    expect(http.get("/v2/models/linear/versions/3/stats"), 404, "no version 3")


def test_v1_mistakes(http: httpx.Client) -> None:
    expect(http.post("/v1/models/linear:predict", content=b"{"), 400, "not valid JSON")
    expect(
        http.post("/v1/models/linear:predict", json={"instances": [[1, 2]], "inputs": [1]}),
        400,
        "exactly one of 'instances' or 'inputs'",
    )
    expect(
        http.post("/v1/models/linear:predict", json={"instances": [["a", "b"]]}),
        400,
        "FP32 data must be numbers",
    )
    expect(
        http.post("/v1/models/linear:predict", json={"instances": [[1, 2], [3]]}),
        400,
        "not a regular",
    )
    expect(
        http.post("/v1/models/linear:predict", json={"instances": [{"q": [1, 2]}]}),
        400,
        "has no input 'x'",
    )
    expect(
        http.post("/v1/models/nope:predict", json={"instances": [[1, 2]]}),
        404,
        "unknown model 'nope'",
    )
    expect(
        http.post("/v1/models/linear/versions/5:predict", json={"instances": [[1, 2]]}),
        404,
        "no version 5",
    )
    expect(
        http.post("/v1/models/linear/labels/gold:predict", json={"instances": [[1, 2]]}),
        404,
        "no version label 'gold'",
    )
    expect(http.post("/v1/models/linear:classify", json={"examples": []}), 501, ":classify")
    expect(http.get("/v1/models/nope"), 404, "unknown model")
    expect(http.get("/v1/models/linear/versions/8"), 404, "no version 8")


def test_never_a_traceback(http: httpx.Client, server: RunningServer) -> None:
    for body in (
        b"",
        b"null",
        b"\xff\xfe",
        b'{"inputs": [null]}',
        b'{"inputs": [{"name": 1}]}',
        b'{"inputs": {"a": 1}}',
        b'{"inputs": [{"name":"x","datatype":"FP32","shape":[1,2],"data":[1e999, 1]}]}',
    ):
        response = http.post("/v2/models/linear/infer", content=body)
        assert 400 <= response.status_code < 500, (body, response.text)
        assert "Traceback" not in response.text
    assert "Traceback" not in server.log()
