"""A custom Python model through the real server: two signatures (one async), pre- and
post-processing, BYTES input, ``isolation: process`` with a worker crash and its recovery, a
timeout, and worker processes stopped on unload."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from serval.testing import RunningServer, run_server
from tests.runtimes.builders import write_python_model

pytestmark = pytest.mark.e2e

SENTIMENT = """
    import asyncio
    import os

    from serval import InvalidInputError, ServingModel, TensorInfo, signature


    class Sentiment(ServingModel):
        inputs = [TensorInfo("text", "BYTES")]
        outputs = [TensorInfo("label", "BYTES"), TensorInfo("score", "FP64")]
        input_format = "strings"

        def load(self):
            self.positive = set((self.path / "positive.txt").read_text().split())

        def preprocess(self, data):
            texts = data["text"]
            if "poison" in texts:
                os._exit(7)  # a crash of the worker process
            if "" in texts:
                raise InvalidInputError("empty text")
            return [text.lower().split() for text in texts]

        def predict(self, words):
            if ["raise"] in words:
                raise ValueError("the model failed")
            return {"score": [sum(w in self.positive for w in ws) / len(ws) for ws in words]}

        @signature(outputs=[TensorInfo("matches", "INT64"), TensorInfo("pid", "INT64")])
        async def explain(self, words):
            await asyncio.sleep(0)
            return {
                "matches": [sum(w in self.positive for w in ws) for ws in words],
                "pid": [os.getpid()] * len(words),
            }

        def postprocess(self, outputs):
            if "score" in outputs:
                outputs["label"] = ["good" if s > 0.5 else "bad" for s in outputs["score"]]
            return outputs
"""

SLEEPY = """
    import os
    import time

    from serval import ServingModel, TensorInfo


    class Sleepy(ServingModel):
        inputs = [TensorInfo("seconds", "FP64")]
        outputs = [TensorInfo("pid", "INT64")]

        def predict(self, data):
            time.sleep(float(data["seconds"][0]))
            return [os.getpid()]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repo = tmp_path_factory.mktemp("repo")
    folder = write_python_model(repo / "sentiment" / "1", SENTIMENT)
    (folder / "positive.txt").write_text("good great fine\n")
    (repo / "sentiment" / "model.yaml").write_text(
        "runtime_options:\n  isolation: process\n  workers: 1\n"
    )
    write_python_model(repo / "sleepy" / "1", SLEEPY)
    (repo / "sleepy" / "model.yaml").write_text(
        "runtime_options:\n  isolation: process\n  timeout_s: 0.5\n"
    )
    with run_server(repo, grpc=False) as running:
        yield running


@pytest.fixture
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_url, timeout=60) as client:
        yield client


def infer(
    http: httpx.Client,
    texts: list[str],
    signature: str | None = None,
    outputs: list[str] | None = None,
) -> httpx.Response:
    body: dict[str, Any] = {
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": texts}]
    }
    if signature is not None:
        body["parameters"] = {"signature": signature}
    if outputs is not None:
        body["outputs"] = [{"name": name} for name in outputs]
    return http.post("/v2/models/sentiment/infer", json=body)


def outputs_of(response: httpx.Response) -> dict[str, list[Any]]:
    assert response.status_code == 200, response.text
    return {o["name"]: o["data"] for o in response.json()["outputs"]}


def test_metadata_lists_the_signatures(http: httpx.Client) -> None:
    meta = http.get("/v2/models/sentiment").json()
    assert meta["platform"] == "python"
    assert meta["signatures"] == ["predict", "explain"]
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert [o["name"] for o in meta["outputs"]] == ["label", "score", "matches", "pid"]


def test_default_signature_with_pre_and_post_processing(http: httpx.Client) -> None:
    got = outputs_of(infer(http, ["Good GREAT day", "awful day"]))
    assert got == {"label": ["good", "bad"], "score": [2 / 3, 0.0]}


def test_named_signature_runs_in_a_worker_process(
    http: httpx.Client, server: RunningServer
) -> None:
    got = outputs_of(infer(http, ["good fine", "meh"], signature="explain"))
    assert got["matches"] == [2, 0]
    assert got["pid"][0] != server.process.pid


def test_output_selection(http: httpx.Client) -> None:
    assert outputs_of(infer(http, ["good"], outputs=["label"])) == {"label": ["good"]}


@pytest.mark.parametrize(
    ("signature", "outputs", "fragment"),
    [
        ("nope", None, "unknown signature 'nope'; this model has: predict, explain"),
        ("predict", ["pid"], "output 'pid' is not an output of signature 'predict'"),
    ],
)
def test_bad_signature_or_output_is_a_400(
    http: httpx.Client, signature: str, outputs: list[str] | None, fragment: str
) -> None:
    response = infer(http, ["good"], signature=signature, outputs=outputs)
    assert response.status_code == 400
    assert fragment in response.json()["error"]


def test_invalid_input_raised_by_the_model_is_a_400(http: httpx.Client) -> None:
    response = infer(http, [""])
    assert response.status_code == 400
    assert response.json()["error"] == "empty text"


def test_model_exception_is_a_500_naming_the_model(http: httpx.Client) -> None:
    before = outputs_of(infer(http, ["x"], signature="explain"))["pid"]
    response = infer(http, ["raise"])
    assert response.status_code == 500
    assert "model 'sentiment' version 1 failed: ValueError: the model failed" in response.text
    assert outputs_of(infer(http, ["x"], signature="explain"))["pid"] == before  # same worker


def test_worker_crash_fails_its_request_and_the_worker_restarts(http: httpx.Client) -> None:
    before = outputs_of(infer(http, ["x"], signature="explain"))["pid"][0]
    response = infer(http, ["poison"])
    assert response.status_code == 500
    message = response.json()["error"]
    assert "model 'sentiment' version 1" in message
    assert "exited with code 7" in message
    # The next request waits for the restarted worker and succeeds.
    assert outputs_of(infer(http, ["good"])) == {"label": ["good"], "score": [1.0]}
    after = outputs_of(infer(http, ["x"], signature="explain"))["pid"][0]
    assert after != before


def test_a_prediction_past_timeout_s_is_a_504(http: httpx.Client) -> None:
    def sleep(seconds: float) -> httpx.Response:
        body = {
            "inputs": [{"name": "seconds", "datatype": "FP64", "shape": [1], "data": [seconds]}]
        }
        return http.post("/v2/models/sleepy/infer", json=body)

    started = time.monotonic()
    response = sleep(5.0)
    assert response.status_code == 504
    assert "did not answer within 0.5 s" in response.json()["error"]
    assert time.monotonic() - started < 4
    assert sleep(0.0).status_code == 200  # a fresh worker took over...
    # ...and only one: the pool keeps its size. Watched for a second, request after request,
    # so that a second replacement would be caught if one started meanwhile.
    pids = set()
    watch_until = time.monotonic() + 1.0
    while time.monotonic() < watch_until or len(pids) == 0:
        pids.add(outputs_of(sleep(0.0))["pid"][0])
    assert len(pids) == 1, pids


def test_unload_stops_the_worker_processes(http: httpx.Client) -> None:
    pid = outputs_of(infer(http, ["x"], signature="explain"))["pid"][0]
    assert http.post("/v2/repository/models/sentiment/unload").status_code == 200
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)
    assert infer(http, ["good"]).status_code in (404, 503)


def _alive(pid: int) -> bool:
    """The server joins (reaps) its workers when it stops them."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
