"""A broken model never takes down the server or the other models."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from serval.testing import run_server
from tests.onnx_models import linear, write_model

pytestmark = pytest.mark.e2e

BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [2.0]}]}


def wait_for(predicate, timeout_s: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_corrupt_model_beside_good_one(tmp_path: Path) -> None:
    write_model(tmp_path, "good", 1, linear([1.0], 0.0))
    (tmp_path / "bad" / "1").mkdir(parents=True)
    (tmp_path / "bad" / "1" / "model.onnx").write_bytes(b"\x08\x01garbage")
    (tmp_path / "config_error" / "1").mkdir(parents=True)
    (tmp_path / "config_error" / "model.yaml").write_text("max_batch_size: lots\n")
    with (
        run_server(tmp_path, "--poll-interval-s", "0.2", grpc=False, wait_ready=False) as server,
        httpx.Client(base_url=server.http_url, timeout=10) as http,
    ):
        wait_for(lambda: http.get("/v2/models/good/ready").status_code == 200)
        assert http.get("/v2/health/live").status_code == 200
        ready = http.get("/v2/health/ready")
        assert ready.status_code == 503
        assert "bad" in ready.json()["error"] and "config_error" in ready.json()["error"]
        response = http.post("/v2/models/good/infer", json=BODY)
        assert response.json()["outputs"][0]["data"] == [2.0]
        index = {r["name"]: r for r in http.post("/v2/repository/index").json()}
        assert index["good"]["state"] == "READY"
        assert index["bad"]["state"] in ("UNAVAILABLE", "LOADING")  # LOADING while retrying
        assert "INVALID_PROTOBUF" in index["bad"]["reason"]
        assert index["config_error"]["state"] == "UNAVAILABLE"
        assert "model.yaml" in index["config_error"]["reason"]
        assert "max_batch_size" in index["config_error"]["reason"]
        # Fixing both makes the server ready, with no restart.
        (tmp_path / "config_error" / "model.yaml").unlink()
        write_model(tmp_path, "config_error", 2, linear([1.0], 0.0))
        (tmp_path / "bad" / "1" / "model.onnx").unlink()
        (tmp_path / "bad" / "1").rmdir()
        write_model(tmp_path, "bad", 1, linear([3.0], 0.0))
        wait_for(lambda: http.get("/v2/health/ready").status_code == 200)
        response = http.post("/v2/models/bad/infer", json=BODY)
        assert response.json()["outputs"][0]["data"] == [6.0]
    log = server.log()
    assert "model bad version 1 failed to load" in log
    assert "Traceback" not in log
