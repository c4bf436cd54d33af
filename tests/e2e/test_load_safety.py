"""The load API cannot lower the operator's safety settings (issue 11, item 1)."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import httpx
import joblib
import pytest
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from serval.testing import run_server
from tests.runtimes.builders import sklearn_pickled_regressor, version_folder

pytestmark = pytest.mark.e2e


class _Hostile:
    """Unpickling it creates ``marker``: what a hostile pickle's code would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def _load(http: httpx.Client, model: str, config: dict[str, object]) -> httpx.Response:
    body = {"parameters": {"config": json.dumps(config)}}
    return http.post(f"/v2/repository/models/{model}/load", json=body)


def test_override_cannot_trust_a_pickle(tmp_path: Path) -> None:
    repo, marker = tmp_path / "repo", tmp_path / "pwned"
    joblib.dump(_Hostile(marker), version_folder(repo, "pk") / "model.joblib")
    sklearn_pickled_regressor(repo, "trusted")  # model.yaml: trust_pickle: true
    with (
        run_server(repo, "--model-control-mode", "explicit") as server,
        httpx.Client(base_url=server.http_url, timeout=30) as http,
    ):
        for config, field in [
            ({"runtime_options": {"trust_pickle": True}}, "runtime_options.trust_pickle"),
            ({"runtime_options": {"trusted_types": ["builtins.open"]}}, "trusted_types"),
            ({"runtime": "python"}, "runtime"),
        ]:
            refused = _load(http, "pk", config)
            assert refused.status_code == 400, refused.text
            assert field in refused.json()["error"]
            assert "model.yaml" in refused.json()["error"]
        with grpc.insecure_channel(server.grpc_address) as channel:  # the same over gRPC
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            config = json.dumps({"runtime_options": {"trust_pickle": True}})
            load = pb.RepositoryModelLoadRequest(model_name="pk")
            load.parameters["config"].string_param = config
            with pytest.raises(grpc.RpcError) as raised:
                stub.RepositoryModelLoad(load)
            assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert "runtime_options.trust_pickle" in (raised.value.details() or "")
        # Without the override, the pickle is refused as before.
        plain = _load(http, "pk", {"max_batch_size": 0})
        assert plain.status_code == 400
        assert "refusing to load model.joblib" in plain.json()["error"]
        assert not marker.exists()

        # Sizes are bounded.
        huge = _load(http, "trusted", {"warmup": {"batch_size": 10_000_000}})
        assert huge.status_code == 400
        assert "warmup.batch_size" in huge.json()["error"]

        # An override keeps the operator's settings from model.yaml, and the log says so.
        loaded = _load(http, "trusted", {"warmup": {"batch_size": 2}})
        assert loaded.status_code == 200, loaded.text
        spec_file = repo / "trusted" / "model.yaml"
        log = server.log()
        assert f"warmup from the load request; runtime, runtime_options from {spec_file}" in log
        assert f"because {spec_file} sets runtime_options.trust_pickle: true" in log
        rows = {"name": "input", "datatype": "FP64", "shape": [1, 4], "data": [0.0] * 4}
        answer = http.post("/v2/models/trusted/infer", json={"inputs": [rows]})
        assert answer.status_code == 200, answer.text
    assert not marker.exists()
