"""What the alert tests share: a webhook receiver on 127.0.0.1, and a small model folder with
a retraining script. The tests keep alerts and triggers in a real SQLite store."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson

WAIT_S = 20.0  # deadline for background work in the tests; never reached when they pass


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` past the deadline."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@dataclass(frozen=True)
class Post:
    at: float  # time.monotonic() when it arrived
    path: str
    body: dict[str, Any]


class Webhook:
    """An HTTP receiver on 127.0.0.1 (a free port): records each POST, answers the next of
    ``statuses`` (the last one repeats), and holds its answers while ``release`` is clear."""

    def __init__(self, statuses: tuple[int, ...] = (200,)) -> None:
        self.statuses = list(statuses)
        self.release = threading.Event()
        self.release.set()
        self._posts: list[Post] = []
        self._arrived = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/hook"

    @property
    def posts(self) -> list[Post]:
        with self._arrived:
            return list(self._posts)

    def wait_for_posts(self, count: int) -> list[Post]:
        with self._arrived:
            assert self._arrived.wait_for(lambda: len(self._posts) >= count, WAIT_S), (
                f"{len(self._posts)} POSTs arrived, waited for {count}"
            )
            return list(self._posts)

    def __enter__(self) -> Webhook:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    def _record(self, path: str, body: bytes) -> int:
        with self._arrived:
            self._posts.append(Post(time.monotonic(), path, orjson.loads(body)))
            self._arrived.notify_all()
            index = min(len(self._posts), len(self.statuses)) - 1
            return self.statuses[index]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                status = webhook._record(self.path, body)
                webhook.release.wait(WAIT_S)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:  # quiet test output
                pass

        return Handler


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (a port just freed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


# Appends its stdin as one line to calls.jsonl in its working directory (the model's folder).
RECORDER = """\
import sys
with open("calls.jsonl", "a") as calls:
    calls.write(sys.stdin.read().strip() + "\\n")
"""


def model_folder(root: Path, script: str = RECORDER) -> Path:
    folder = root / "m"
    folder.mkdir()
    (folder / "retrain.py").write_text(script)
    return folder


def recorded_calls(folder: Path) -> list[dict[str, Any]]:
    calls = folder / "calls.jsonl"
    if not calls.exists():
        return []
    return [orjson.loads(line) for line in calls.read_text().splitlines()]
