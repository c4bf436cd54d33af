"""The real server serving an s3:// model repository (moto's S3 server): versions uploaded,
a partial upload withheld while the previous version serves, a version removed, and a
store that goes away."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from serval.testing import free_port, run_server
from tests.onnx_models import linear
from tests.s3_server import S3Server, manifest, moto_server, new_bucket, running_s3

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    with running_s3() as server:
        yield server


@pytest.fixture
def bucket(s3_server: S3Server) -> Iterator[str]:
    with new_bucket(s3_server) as name:
        yield name


POLL_S = "0.2"
BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [1.0]}]}


def upload(client: Any, name: str, key: str, body: bytes) -> None:
    client.put_object(Bucket=name, Key=f"models/{key}", Body=body)


def model_bytes(value: float) -> bytes:
    """A model answering ``value`` (its version number) whatever the input."""
    return linear([0.0], value).SerializeToString()


def wait_for(check: Callable[[], Any], what: str, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def answering_version(http: httpx.Client) -> str:
    response = http.post("/v2/models/m/infer", json=BODY)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["outputs"][0]["data"][0] == float(body["model_version"])
    return str(body["model_version"])


def index(http: httpx.Client) -> list[dict[str, Any]]:
    response = http.post("/v2/repository/index", json={})
    assert response.status_code == 200, response.text
    return list(response.json())


def test_the_server_follows_an_object_store(s3_server: S3Server, bucket: str) -> None:
    client = s3_server.client()
    upload(client, bucket, "m/1/model.onnx", model_bytes(1.0))
    url = f"s3://{bucket}/models"
    with (
        run_server(url, "--poll-interval-s", POLL_S, grpc=False, env=s3_server.env()) as server,
        httpx.Client(base_url=server.http_url, timeout=10) as http,
    ):
        assert answering_version(http) == "1"

        # A partial upload of version 2: its manifest names a file not there yet.
        two = model_bytes(2.0)
        upload(client, bucket, "m/2/.serval-manifest.json", manifest({"model.onnx": two}))

        def withheld() -> str:
            rows = [r for r in index(http) if r.get("version") == "2"]
            return rows[0].get("reason", "") if rows else ""

        reason = wait_for(withheld, "version 2's reason in the index")
        assert "incomplete" in reason and "model.onnx" in reason
        assert answering_version(http) == "1"  # the previous version keeps serving

        upload(client, bucket, "m/2/model.onnx", two)
        wait_for(lambda: answering_version(http) == "2", "version 2 to serve")

        # Version 2 removed from the store: it unloads, and version 1 serves again.
        client.delete_object(Bucket=bucket, Key="models/m/2/model.onnx")
        client.delete_object(Bucket=bucket, Key="models/m/2/.serval-manifest.json")
        wait_for(lambda: answering_version(http) == "1", "version 1 to serve again")
        assert http.get("/v2/health/ready").status_code == 200


def test_an_unreachable_store_keeps_the_loaded_models_serving() -> None:
    port = free_port()
    store = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    store.start()
    own = S3Server(f"http://127.0.0.1:{port}")
    try:
        client = own.client()
        client.create_bucket(Bucket="models-down")
        upload(client, "models-down", "m/1/model.onnx", model_bytes(1.0))
        url = "s3://models-down/models"
        with (
            run_server(url, "--poll-interval-s", POLL_S, grpc=False, env=own.env()) as server,
            httpx.Client(base_url=server.http_url, timeout=10) as http,
        ):
            assert answering_version(http) == "1"
            store.stop()

            def degraded() -> list[str]:
                response = http.get("/v2/health/ready")
                assert response.status_code == 200, response.text  # ready, but says why
                return list(response.json().get("degraded", []))

            notes = wait_for(degraded, "readiness to say the store is unreachable")
            assert any(url in note and "serving the cached models" in note for note in notes)
            assert answering_version(http) == "1"
    finally:
        store.stop()
