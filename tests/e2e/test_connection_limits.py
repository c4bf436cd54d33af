"""Limits against slow and greedy HTTP clients, against the real server: oversized headers,
headers sent slowly, connections that send nothing, and more connections than allowed."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serval.testing import RunningServer, run_server
from tests.onnx_models import linear, write_model

pytestmark = pytest.mark.e2e

MAX_CONNECTIONS = 20
RESERVE = 8  # ConnectionLimits.overflow_reserve for 20


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("repo")
    write_model(repo, "linear", 1, linear([1.0, 2.0], 0.0))
    return repo


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[RunningServer]:
    with run_server(
        repository,
        "--header-timeout-s",
        "1",
        "--max-header-bytes",
        "8192",
        "--max-connections",
        str(MAX_CONNECTIONS),
    ) as running:
        yield running


def connect(server: RunningServer) -> socket.socket:
    return socket.create_connection((server.host, server.http_port), timeout=10)


def read_until_closed(sock: socket.socket, timeout_s: float) -> bytes:
    """What the server sends until it closes the connection; fails past ``timeout_s``."""
    sock.settimeout(timeout_s)
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            received += chunk
    return received


def health_answers(server: RunningServer, within_s: float = 1.0) -> bool:
    with httpx.Client(base_url=server.http_url, timeout=within_s) as client:
        return client.get("/v2/health/live").status_code == 200


def test_an_oversized_header_is_refused_at_once(server: RunningServer) -> None:
    sock = connect(server)
    started = time.monotonic()
    head = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Big: "
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(head + b"a" * (4 * 2**20))
    reply = read_until_closed(sock, 5)
    sock.close()
    assert time.monotonic() - started < 3
    assert reply == b"" or reply.startswith(b"HTTP/1.1 431"), reply[:200]
    assert health_answers(server)


def test_headers_sent_slowly_are_cut_off_at_the_timeout(server: RunningServer) -> None:
    sock = connect(server)
    started = time.monotonic()
    closed = threading.Event()
    errors: list[BaseException] = []

    def drip() -> None:
        try:
            for byte in b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
                if closed.is_set():
                    return
                sock.send(bytes([byte]))
                time.sleep(0.1)
        except OSError:
            return  # the server closed the connection: what the test wants
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    sender = threading.Thread(target=drip)
    sender.start()
    try:
        reply = read_until_closed(sock, 6)
        took = time.monotonic() - started
    finally:
        closed.set()
        sender.join()
        sock.close()
    if errors:
        raise errors[0]
    assert took < 3, took  # the timeout is 1 s
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert health_answers(server)


def test_a_connection_that_sends_nothing_is_closed(server: RunningServer) -> None:
    sock = connect(server)
    started = time.monotonic()
    reply = read_until_closed(sock, 6)
    sock.close()
    assert time.monotonic() - started < 3
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]


@pytest.mark.parametrize("sent", [b"", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"])
def test_a_grpc_connection_that_never_finishes_its_handshake_is_closed(
    server: RunningServer, sent: bytes
) -> None:
    sock = socket.create_connection((server.host, server.grpc_port), timeout=10)
    started = time.monotonic()
    sock.sendall(sent)
    read_until_closed(sock, 10)
    sock.close()
    assert time.monotonic() - started < 3  # the header timeout, 1 s, applies to gRPC too


def test_connections_beyond_the_limit_are_refused_and_health_answers(
    repository: Path,
) -> None:
    # The held connections must outlive the test's steps: a longer header timeout here.
    with run_server(
        repository, "--max-connections", str(MAX_CONNECTIONS), "--header-timeout-s", "30",
        grpc=False,
    ) as server:  # fmt: skip
        held = [connect(server) for _ in range(MAX_CONNECTIONS)]
        try:
            # Let the server see them all before counting on them.
            with httpx.Client(base_url=server.http_url, timeout=5) as client:
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    if client.get("/v2").status_code == 503:
                        break
                else:
                    pytest.fail("the connection limit never applied")
            # Past the limit: requests other than health get 503 and the connection closes.
            sock = connect(server)
            sock.sendall(b"GET /v2 HTTP/1.1\r\nHost: x\r\n\r\n")
            reply = read_until_closed(sock, 5)
            sock.close()
            assert reply.startswith(b"HTTP/1.1 503"), reply[:200]
            assert b"retry-after: 1" in reply.lower()
            # ... while health still answers.
            assert health_answers(server)
            # Past the reserve too: answered 503 and closed at once, without a request.
            extra = [connect(server) for _ in range(RESERVE + 10)]
            try:
                replies = [read_until_closed(sock, 5) for sock in extra[RESERVE + 2 :]]
            finally:
                for sock in extra:
                    sock.close()
            assert all(r == b"" or r.startswith(b"HTTP/1.1 503") for r in replies), replies
            assert health_answers(server)
        finally:
            for sock in held:
                sock.close()
        with httpx.Client(base_url=server.http_url, timeout=5) as client:
            deadline = time.monotonic() + 10
            while client.get("/v2").status_code != 200:
                assert time.monotonic() < deadline, "the server never took new connections"
                time.sleep(0.05)
