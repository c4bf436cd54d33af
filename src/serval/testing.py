"""Public test kit: run the real server as a subprocess; fake loaders and an in-memory model
repository (``MemorySource``) for unit tests of the core."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from serval.core.errors import ModelConfigError
from serval.core.lifecycle.loader import LoadRequest
from serval.core.lifecycle.source import ModelSource, VersionSource
from serval.core.model_spec import ModelSpec
from serval.core.tensors.datatypes import DataType
from serval.core.types import (
    InferenceRequest,
    InferenceResponse,
    ServableMetadata,
    Tensor,
    TensorSpec,
)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int
    log_path: Path
    host: str = "127.0.0.1"
    scheme: str = "http"

    @property
    def http_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.http_port}"

    @property
    def http_address(self) -> str:
        """``host:port``, as tritonclient.http wants it."""
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_address(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int:
        """Signal the server and wait for it to exit; returns its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@contextlib.contextmanager
def run_server(
    model_repository: Path | str,
    *args: str,
    grpc: bool = True,
    env: dict[str, str] | None = None,
    wait_ready: bool = True,
    ready_timeout_s: float = 60.0,
    tls_ca: Path | None = None,
    client_cert: tuple[Path, Path] | None = None,
    auth_token: str | None = None,
) -> Iterator[RunningServer]:
    """Start ``serval serve`` on free loopback ports, wait until it is live (and ready, unless
    ``wait_ready`` is false), and stop it on exit.

    For a server given ``--tls-cert`` (in ``args``), ``tls_ca`` is the CA that signed it: the
    server is reached over https, and ``client_cert`` (certificate, key) is presented when it
    asks for one (``--tls-client-ca``). ``auth_token`` is sent while waiting, for a server
    whose health probes need one (``--auth-open-health false``)."""
    http_port = free_port()
    grpc_port = free_port() if grpc else 0
    log_file = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in the finally below
        prefix="serval-", suffix=".log", delete=False
    )
    command = [
        sys.executable,
        "-m",
        "serval",
        "serve",
        str(model_repository),
        "--host",
        "127.0.0.1",
        "--http-port",
        str(http_port),
        "--grpc-port",
        str(grpc_port),
        *args,
    ]
    # A state folder of its own unless the test names one (--state-dir, XDG_STATE_HOME): a
    # monitored model's store never lands in the user's ~/.local/state.
    state_home = tempfile.mkdtemp(prefix="serval-state-")
    process_env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "XDG_STATE_HOME": state_home,
        # No drain delay, even when the tests run in a Kubernetes pod (the default there is
        # 5 s): a test that wants one passes --drain-delay-s, which wins over this.
        "SERVAL_DRAIN_DELAY_S": "0",
        **(env or {}),
    }
    process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=process_env)
    server = RunningServer(
        process, http_port, grpc_port, Path(log_file.name), scheme="https" if tls_ca else "http"
    )
    try:
        _wait_until(
            server,
            "/v2/health/ready" if wait_ready else "/v2/health/live",
            ready_timeout_s,
            verify=client_tls_context(tls_ca, client_cert) if tls_ca is not None else True,
            headers={"Authorization": f"Bearer {auth_token}"} if auth_token else None,
        )
        yield server
    finally:
        server.stop()
        log_file.close()
        shutil.rmtree(state_home, ignore_errors=True)


def client_tls_context(ca: Path, client_cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    """An SSL context trusting ``ca`` and presenting ``client_cert`` (certificate, key)."""
    context = ssl.create_default_context(cafile=str(ca))
    if client_cert is not None:
        context.load_cert_chain(str(client_cert[0]), str(client_cert[1]))
    return context


def _wait_until(
    server: RunningServer,
    path: str,
    timeout_s: float,
    verify: ssl.SSLContext | bool = True,
    headers: dict[str, str] | None = None,
) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(
        base_url=server.http_url, timeout=2.0, verify=verify, headers=headers
    ) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(
                    f"serval exited with {server.process.returncode}:\n{server.log()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if client.get(path).status_code == 200:
                    return
            time.sleep(0.05)
    raise TimeoutError(f"serval did not answer 200 on {path} in {timeout_s} s:\n{server.log()}")


# -- fakes for unit tests of the core -------------------------------------------------------


@dataclass
class EchoPredictor:
    """Returns its input ``x`` as output ``y``; counts calls; can be told to fail."""

    datatype: DataType = DataType.FP32
    fail_with: Exception | None = None
    calls: int = 0
    closed: bool = False
    delay_s: float = 0.0
    gate: threading.Event | None = None  # when set, each prediction waits for it (10 s at most)

    @property
    def metadata(self) -> ServableMetadata:
        return ServableMetadata(
            platform="fake",
            inputs=(TensorSpec("x", self.datatype, (-1,)),),
            outputs=(TensorSpec("y", self.datatype, (-1,)),),
        )

    def predict(self, request: InferenceRequest) -> InferenceResponse:
        self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.gate is not None:
            self.gate.wait(10.0)
        if self.fail_with is not None:
            raise self.fail_with
        data = request.inputs[0].data
        return InferenceResponse(request.model_name, [Tensor("y", self.datatype, data)])

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeLoader:
    request: LoadRequest
    predictor: EchoPredictor
    error: Exception | None = None

    def load(self) -> EchoPredictor:
        if self.error is not None:
            raise self.error
        return self.predictor


@dataclass
class FakeLoaderFactory:
    """Loads every version as an ``EchoPredictor``; versions listed in ``failing`` fail."""

    failing: dict[tuple[str, int], Exception] = field(default_factory=dict)
    loaded: list[tuple[str, int]] = field(default_factory=list)
    predictors: dict[tuple[str, int], EchoPredictor] = field(default_factory=dict)

    def __call__(self, request: LoadRequest) -> FakeLoader:
        key = (request.name, request.version)
        self.loaded.append(key)
        predictor = self.predictors.setdefault(key, EchoPredictor())
        return FakeLoader(request, predictor, self.failing.get(key))


class MemorySource:
    """A model repository in memory (the ``Source`` protocol) for unit tests of the core: no
    folders are written. Each change makes new fingerprints, as a change on disk would."""

    def __init__(self) -> None:
        self._specs: dict[str, ModelSpec | None] = {}
        self._errors: dict[str, str] = {}
        self._versions: dict[str, dict[int, str]] = {}
        self._edits = 0

    def add_version(self, name: str, version: int) -> None:
        """Add (or, when it exists, change the files of) ``version`` of ``name``."""
        self._specs.setdefault(name, ModelSpec())
        self._edits += 1
        self._versions.setdefault(name, {})[version] = f"edit-{self._edits}"

    def remove_version(self, name: str, version: int) -> None:
        del self._versions[name][version]

    def remove_model(self, name: str) -> None:
        for table in (self._specs, self._errors, self._versions):
            table.pop(name, None)

    def set_spec(self, name: str, spec: ModelSpec | dict[str, object]) -> None:
        """Give ``name`` this model.yaml (a spec, or its fields, validated as a file's are);
        an invalid one is the model's config error. Every version's fingerprint changes,
        unless only the ``traffic`` section did (as on disk: it reloads nothing)."""
        self._versions.setdefault(name, {})
        self._errors.pop(name, None)
        previous = self._specs.get(name)
        try:
            where = f"{name}/model.yaml"
            parsed = spec if isinstance(spec, ModelSpec) else ModelSpec.parse(spec, source=where)
        except ModelConfigError as exc:
            self._errors[name] = exc.message
            self._specs[name] = None
        else:
            self._specs[name] = parsed
            if previous is not None and _without_traffic(previous) == _without_traffic(parsed):
                return
        self._edits += 1
        for version in self._versions[name]:
            self._versions[name][version] = f"edit-{self._edits}"

    def scan(self) -> dict[str, ModelSource]:
        return {name: model for name in self._versions if (model := self.scan_model(name))}

    def scan_model(self, name: str) -> ModelSource | None:
        if name not in self._versions:
            return None
        path = Path("/memory") / name
        versions = {
            version: VersionSource(version, path / str(version), fingerprint)
            for version, fingerprint in self._versions[name].items()
        }
        error = self._errors.get(name)
        return ModelSource(name, path, self._specs.get(name), error, versions)


def _without_traffic(spec: ModelSpec) -> ModelSpec:
    return spec.model_copy(update={"traffic": None})


def write_version(
    repository: Path, name: str, version: int, files: Sequence[str] = ("model.onnx",)
) -> Path:
    """Create ``repository/name/version/`` with empty placeholder files (for fake loaders)."""
    folder = repository / name / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    for file in files:
        (folder / file).write_bytes(b"")
    return folder
