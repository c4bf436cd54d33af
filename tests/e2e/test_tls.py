"""TLS and mutual TLS on REST and gRPC, with certificates the test makes."""

from __future__ import annotations

import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from tritonclient.utils import InferenceServerException

from serval.protocols.grpc.generated import grpc_service_pb2 as pb
from serval.protocols.grpc.generated import grpc_service_pb2_grpc as pb_grpc
from serval.testing import RunningServer, client_tls_context, run_server
from tests.e2e.tls_certs import Certificates, make_certificates
from tests.onnx_models import linear, write_model

pytestmark = pytest.mark.e2e

INFER_BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("repo")
    write_model(repo, "linear", 1, linear([1.0, 2.0], 0.0))
    return repo


def tls_args(certs: Certificates, *, mutual: bool = False) -> list[str]:
    args = ["--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key)]
    return [*args, "--tls-client-ca", str(certs.ca)] if mutual else args


@pytest.fixture(scope="module")
def server(repository: Path, certs: Certificates) -> Iterator[RunningServer]:
    with run_server(repository, *tls_args(certs), tls_ca=certs.ca) as running:
        yield running


@pytest.fixture(scope="module")
def mutual_server(repository: Path, certs: Certificates) -> Iterator[RunningServer]:
    with run_server(
        repository,
        *tls_args(certs, mutual=True),
        tls_ca=certs.ca,
        client_cert=(certs.client_cert, certs.client_key),
    ) as running:
        yield running


def grpc_infer(server: RunningServer, **ssl_options: object) -> list[list[float]]:
    client = triton_grpc.InferenceServerClient(server.grpc_address, ssl=True, **ssl_options)
    try:
        tensor = triton_grpc.InferInput("x", [1, 2], "FP32")
        tensor.set_data_from_numpy(np.array([[1.0, 2.0]], dtype=np.float32))
        result = client.infer("linear", [tensor])
        return result.as_numpy("y").tolist()  # type: ignore[no-any-return]
    finally:
        client.close()


def test_rest_over_tls(server: RunningServer, certs: Certificates) -> None:
    assert server.http_url.startswith("https://")
    with httpx.Client(base_url=server.http_url, verify=client_tls_context(certs.ca)) as http:
        answer = http.post("/v2/models/linear/infer", json=INFER_BODY)
        assert answer.status_code == 200, answer.text
        assert answer.json()["outputs"][0]["data"] == [5.0]
    # A client that does not trust the CA refuses the server; plain HTTP gets no answer.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.http_url}/v2/health/live", verify=client_tls_context(certs.other_ca))
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://{server.http_address}/v2/health/live", timeout=5)
    assert "REST on https://" in server.log()


def test_grpc_over_tls(server: RunningServer, certs: Certificates) -> None:
    assert grpc_infer(server, root_certificates=str(certs.ca)) == [[5.0]]
    # grpcio directly, and a plaintext channel that the server does not answer.
    credentials = grpc.ssl_channel_credentials(root_certificates=certs.ca.read_bytes())
    with grpc.secure_channel(server.grpc_address, credentials) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        assert stub.ServerLive(pb.ServerLiveRequest(), timeout=10).live
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.RpcError) as caught:
            stub.ServerLive(pb.ServerLiveRequest(), timeout=5)
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_rest(mutual_server: RunningServer, certs: Certificates) -> None:
    with_cert = client_tls_context(certs.ca, (certs.client_cert, certs.client_key))
    assert httpx.get(f"{mutual_server.http_url}/v2", verify=with_cert).status_code == 200
    without = client_tls_context(certs.ca)
    with pytest.raises(
        (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError, ssl.SSLError)
    ):
        httpx.get(f"{mutual_server.http_url}/v2", verify=without, timeout=5)


def test_mutual_tls_grpc(mutual_server: RunningServer, certs: Certificates) -> None:
    answer = grpc_infer(
        mutual_server,
        root_certificates=str(certs.ca),
        private_key=str(certs.client_key),
        certificate_chain=str(certs.client_cert),
    )
    assert answer == [[5.0]]
    with pytest.raises(InferenceServerException) as caught:
        grpc_infer(mutual_server, root_certificates=str(certs.ca))
    assert "UNAVAILABLE" in str(caught.value.status())


def test_a_missing_key_is_a_settings_error(repository: Path, certs: Certificates) -> None:
    done = subprocess.run(
        [
            sys.executable, "-m", "serval", "serve", str(repository),
            "--tls-cert", str(certs.server_cert),
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "tls_cert and tls_key go together" in done.stderr
