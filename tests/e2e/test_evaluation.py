"""Continuous evaluation against the real server, the real PostgreSQL and a real SQLite file:
sampling, ground truth joined by id and by key, quality equal to the metric computed here,
drift of one shifted feature, an alert webhook and a retraining command, export, a restart,
SIGTERM under load, and PostgreSQL unreachable (behind a proxy the test starts and stops)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import accuracy_score

from serval.storage.postgres_evaluation import PostgresEvaluationStore
from serval.storage.sqlite_evaluation import SqliteEvaluationStore
from serval.testing import RunningServer, run_server
from tests.evaluation.alert_kit import RECORDER, Webhook, recorded_calls
from tests.storage.evaluation_stores import postgresql_schema

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "models" / "classifier" / "1"
FEATURES = ("a", "b", "c", "d")
WAIT_S = 30.0
# The first evaluation imports scipy and scikit-learn: seconds on a loaded 2-core machine.
CLIENT_TIMEOUT_S = 60.0


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def repository(root: Path, monitoring: str, *, versions: int = 1, extra: str = "") -> Path:
    """The example classifier (features FP32 [-1, 4] -> label INT64, probabilities) with a
    reference of 2,000 rows from N(0, 1) and its own labels, and ``monitoring``."""
    folder = root / "classifier"
    for version in range(1, versions + 1):
        (folder / str(version)).mkdir(parents=True)
        shutil.copy(EXAMPLE / "model.onnx", folder / str(version) / "model.onnx")
    rows = np.random.default_rng(0).normal(size=(2000, 4)).astype(np.float32)
    import onnxruntime  # noqa: PLC0415 - only to label the reference

    session = onnxruntime.InferenceSession(str(EXAMPLE / "model.onnx"))
    labels = session.run(["label"], {"features": rows})[0]
    columns = {name: rows[:, index] for index, name in enumerate(FEATURES)}
    pq.write_table(pa.table({**columns, "label": labels}), folder / "reference.parquet")
    (folder / "retrain.py").write_text(RECORDER)
    (folder / "model.yaml").write_text(f"max_batch_size: 64\n{extra}monitoring:\n{monitoring}")
    return root


def infer(
    http: httpx.Client, rows: np.ndarray, request_id: str, version: str | None = None
) -> list[int]:
    body = {
        "id": request_id,
        "inputs": [
            {"name": "features", "datatype": "FP32", "shape": list(rows.shape)}
            | {"data": rows.ravel().tolist()}
        ],
    }
    path = f"/v2/models/classifier{f'/versions/{version}' if version else ''}/infer"
    reply = http.post(path, json=body)
    assert reply.status_code == 200, reply.text
    return next(o["data"] for o in reply.json()["outputs"] if o["name"] == "label")


def evaluation(http: httpx.Client) -> dict[str, Any]:
    reply = http.get("/v2/models/classifier/evaluation")
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def logged(http: httpx.Client, version: str = "1") -> int:
    return int(evaluation(http)["versions"].get(version, {}).get("logged", 0))


def metric(http: httpx.Client, name: str, **labels: str) -> float | None:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def drained(http: httpx.Client) -> bool:
    return metric(http, "serval_prediction_log_queued") == 0.0


@pytest.fixture
def postgresql() -> Iterator[str]:
    with postgresql_schema() as url:
        yield url


# -- the prediction log -------------------------------------------------------------------------


def test_a_tenth_is_logged_at_sample_rate_0_1_on_postgresql(
    tmp_path: Path, postgresql: str
) -> None:
    repo = repository(tmp_path / "repo", "  log: {sample_rate: 0.1}\n")
    requests = 2000
    rows = np.random.default_rng(1).normal(size=(1, 4)).astype(np.float32)
    with (
        run_server(repo, "--store", postgresql, "--state-dir", str(tmp_path / "s")) as server,
        httpx.Client(base_url=server.http_url, timeout=CLIENT_TIMEOUT_S) as http,
    ):
        for index in range(requests):
            infer(http, rows, f"tenth-{index}")
        wait_for(lambda: drained(http), "the log's queue to drain")
        count = logged(http)
    # Binomial(2000, 0.1): mean 200, standard deviation 13.4; five of them either side.
    assert 133 <= count <= 267, count


def test_every_request_is_logged_with_its_version_and_id_at_1_0(
    tmp_path: Path, postgresql: str
) -> None:
    url = postgresql
    repo = repository(
        tmp_path / "repo",
        "  log: {sample_rate: 1.0}\n",
        versions=2,
        extra="version_policy: all\n",
    )
    rows = np.random.default_rng(2).normal(size=(3, 4)).astype(np.float32)
    with (
        run_server(repo, "--store", url, "--state-dir", str(tmp_path / "s")) as server,
        httpx.Client(base_url=server.http_url, timeout=CLIENT_TIMEOUT_S) as http,
    ):
        for index in range(10):
            infer(http, rows, f"every-{index}", version="1" if index % 2 else "2")
        wait_for(lambda: drained(http), "the log's queue to drain")
    store = PostgresEvaluationStore(url)
    try:
        by_version = {
            version: store.recent_predictions("classifier", version, 100) for version in (1, 2)
        }
    finally:
        store.close()
    ids = {
        version: sorted(p.request_id or "" for p in records if p.request_id.startswith("every"))
        for version, records in by_version.items()
    }
    assert ids[1] == sorted(f"every-{i}" for i in range(10) if i % 2)
    assert ids[2] == sorted(f"every-{i}" for i in range(10) if not i % 2)
    record = by_version[1][0]
    assert record.rows == 3 and record.role == "primary" and record.latency_ms > 0


# -- ground truth, quality, drift, alerts ------------------------------------------------------

MONITORED = """\
  log: {sample_rate: 1.0}
  prediction: label
  score: probabilities
  reference: reference.parquet
  drift: {method: psi, window: 600}
  quality: {metric: accuracy, window: 600, min: 0.9}
  alerts: {webhook: "WEBHOOK"}
  retrain: {command: ["PYTHON", "retrain.py"], cooldown_s: 3600}
"""


@dataclass
class Monitored:
    """A server of a monitored, keyed classifier on one store, its webhook receiver, and the
    flags that name the store (--state-dir, and --store for PostgreSQL)."""

    server: RunningServer
    webhook: Webhook
    store_args: list[str]
    state: Path


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def monitored(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Monitored]:
    root = tmp_path_factory.mktemp("monitored")
    state = root / "state"
    with Webhook() as webhook, contextlib.ExitStack() as stack:
        store_args = ["--state-dir", str(state)]
        if request.param == "postgresql":
            store_args += ["--store", stack.enter_context(postgresql_schema())]
        monitoring = MONITORED.replace("WEBHOOK", webhook.url).replace("PYTHON", sys.executable)
        repo = repository(root / "repo", monitoring, extra="keys: [user]\n")
        # A long interval: evaluations here run when the test asks for them.
        interval = ["--evaluation-interval-s", "3600"]
        with run_server(repo, *store_args, *interval) as server:
            yield Monitored(server, webhook, store_args, state)


def test_ground_truth_joins_and_quality_is_the_metric_of_the_same_labels(
    monitored: Monitored,
) -> None:
    server = monitored.server
    rng = np.random.default_rng(3)
    truths: list[int] = []
    predictions: list[int] = []
    with httpx.Client(base_url=server.http_url, timeout=CLIENT_TIMEOUT_S) as http:
        feedback = []
        for index in range(60):
            rows = rng.normal(size=(5, 4)).astype(np.float32)
            users = [f"user-{index}-{row}" for row in range(5)]
            body = {
                "id": f"q-{index}",
                "inputs": [
                    {"name": "features", "datatype": "FP32", "shape": [5, 4]}
                    | {"data": rows.ravel().tolist()},
                    {"name": "user", "datatype": "BYTES", "shape": [5], "data": users},
                ],
            }
            reply = http.post("/v2/models/classifier/infer", json=body)
            assert reply.status_code == 200, reply.text
            labels = next(o["data"] for o in reply.json()["outputs"] if o["name"] == "label")
            # A third of the rows are wrong; the last request is labelled by key, row by row.
            truth = [
                label if (index + row) % 3 else (label + 1) % 3 for row, label in enumerate(labels)
            ]
            predictions += labels
            truths += truth
            if index < 59:
                feedback.append({"id": f"q-{index}", "ground_truth": truth})
            else:
                feedback += [
                    {"key": u, "ground_truth": t} for u, t in zip(users, truth, strict=True)
                ]
        wait_for(lambda: drained(http), "the log's queue to drain")
        reply = http.post("/v2/models/classifier/feedback", json={"items": feedback})
        assert reply.json() == {"accepted": 64, "matched": 64}
        # Ground truth that cannot label its prediction is refused, naming the id.
        wrong = http.post("/v2/models/classifier/feedback", json={"id": "q-1", "ground_truth": [1]})
        assert wrong.status_code == 400 and "q-1" in wrong.json()["error"]
        result = evaluation(http)["versions"]["1"]
    assert result["labelled"] == 60
    quality = result["quality"]
    assert quality["rows"] == 300
    assert quality["value"] == pytest.approx(accuracy_score(truths, predictions))
    assert quality["breached"] is True  # 2/3 < 0.9
    sqlite = (monitored.state / "evaluation.sqlite3").exists()
    assert sqlite == ("--store" not in monitored.store_args)


def test_a_shifted_feature_drifts_alone_and_alerts_reach_the_webhook_once(
    monitored: Monitored,
) -> None:
    server, webhook = monitored.server, monitored.webhook
    rng = np.random.default_rng(4)
    with httpx.Client(base_url=server.http_url, timeout=CLIENT_TIMEOUT_S) as http:
        for index in range(40):
            rows = rng.normal(size=(15, 4)).astype(np.float32)
            rows[:, 2] += 1.5  # feature c only
            users = [f"drift-{index}-{row}" for row in range(15)]
            body = {
                "inputs": [
                    {"name": "features", "datatype": "FP32", "shape": [15, 4]}
                    | {"data": rows.ravel().tolist()},
                    {"name": "user", "datatype": "BYTES", "shape": [15], "data": users},
                ]
            }
            assert http.post("/v2/models/classifier/infer", json=body).status_code == 200
        wait_for(lambda: drained(http), "the log's queue to drain")
        drift = evaluation(http)["versions"]["1"]["drift"]
        for _ in range(3):  # more evaluations while the alerts last: no more POSTs
            evaluation(http)
        assert metric(http, "serval_model_drift", feature="c") == pytest.approx(
            drift["features"]["c"]["score"]
        )
    assert drift["rows"] == 600
    drifted = {name for name, score in drift["features"].items() if score["drifted"]}
    assert drifted == {"c"}
    posts = webhook.wait_for_posts(2)  # quality (previous test) and drift of c
    subjects = sorted((p.body["kind"], p.body["metric"]) for p in webhook.posts)
    assert ("drift", "c") in subjects and ("quality", "accuracy") in subjects
    assert len(subjects) == len(set(subjects)), subjects  # each alert once
    assert all(p.body["model"] == "classifier" and p.body["version"] == 1 for p in posts)


def test_the_retraining_command_runs_once_within_its_cooldown(monitored: Monitored) -> None:
    server = monitored.server
    folder = server_repository(server) / "classifier"
    with httpx.Client(base_url=server.http_url, timeout=CLIENT_TIMEOUT_S) as http:
        wait_for(lambda: len(recorded_calls(folder)) >= 1, "the retraining command")
        for _ in range(3):
            evaluation(http)
        triggers = evaluation(http)["triggers"]
    calls = recorded_calls(folder)
    assert len(calls) == 1 and len(triggers) == 1
    assert calls[0]["model"] == "classifier" and triggers[0]["outcome"] == "ok"


def test_export_holds_the_predictions_joined_with_their_ground_truth(
    monitored: Monitored, tmp_path: Path
) -> None:
    out = tmp_path / "data.parquet"
    command = [sys.executable, "-m", "serval", "monitor", "export", "classifier"]
    done = subprocess.run(
        [*command, "--out", str(out), *monitored.store_args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    table = pq.read_table(out).to_pylist()
    labelled = [row for row in table if row["ground_truth"] is not None]
    assert len(labelled) == 300
    assert all(row["version"] == 1 and row["timestamp"] is not None for row in table)
    keyed = [row for row in labelled if row["request_id"] is None or row["key"]]
    assert keyed  # rows labelled by key carry their key


def server_repository(server: RunningServer) -> Path:
    """The repository a running server serves (the argument after ``serve``)."""
    args = server.process.args
    assert isinstance(args, list)
    return Path(str(args[args.index("serve") + 1]))


# -- restarts, shutdown, an unreachable store -------------------------------------------------


def test_evaluation_survives_a_restart(tmp_path: Path) -> None:
    repo = repository(
        tmp_path / "repo",
        "  log: {sample_rate: 1.0}\n  prediction: label\n"
        "  quality: {metric: accuracy, window: 100}\n",
    )
    args = ("--state-dir", str(tmp_path / "state"))
    rows = np.random.default_rng(5).normal(size=(2, 4)).astype(np.float32)
    with (
        run_server(repo, *args) as server,
        httpx.Client(base_url=server.http_url, timeout=CLIENT_TIMEOUT_S) as http,
    ):
        labels = [infer(http, rows, f"restart-{index}") for index in range(5)]
        wait_for(lambda: drained(http), "the log's queue to drain")
        items = [{"id": f"restart-{i}", "ground_truth": label} for i, label in enumerate(labels)]
        assert http.post("/v2/models/classifier/feedback", json={"items": items}).status_code == 200
        before = evaluation(http)["versions"]
    with (
        run_server(repo, *args) as server,
        httpx.Client(base_url=server.http_url, timeout=CLIENT_TIMEOUT_S) as http,
    ):
        after = evaluation(http)["versions"]
    assert after["1"]["logged"] == before["1"]["logged"] == 5
    assert after["1"]["labelled"] == 5 and after["1"]["quality"]["value"] == 1.0


def test_sigterm_under_load_loses_no_record(tmp_path: Path) -> None:
    repo = repository(tmp_path / "repo", "  log: {sample_rate: 1.0}\n")
    state = tmp_path / "state"
    answered = 0
    lock = threading.Lock()
    stop = threading.Event()
    row = np.zeros((1, 4), np.float32).ravel().tolist()
    body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 4], "data": row}]}

    def load(url: str) -> None:
        nonlocal answered
        with httpx.Client(base_url=url, timeout=CLIENT_TIMEOUT_S) as http:
            while not stop.is_set():
                try:
                    ok = http.post("/v2/models/classifier/infer", json=body).status_code == 200
                except httpx.HTTPError:
                    return  # the server went away
                if ok:
                    with lock:
                        answered += 1

    with run_server(repo, "--state-dir", str(state)) as server:
        threads = [threading.Thread(target=load, args=(server.http_url,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        wait_for(lambda: answered >= 1000, "a thousand answers")
        assert server.stop() == 0  # SIGTERM while the load goes on
        stop.set()
        for thread in threads:
            thread.join(WAIT_S)
    store = SqliteEvaluationStore(state / "evaluation.sqlite3")
    try:
        count = store.counts("classifier")[1].logged
    finally:
        store.close()
    assert count == answered


class PostgresProxy:
    """A TCP proxy on 127.0.0.1 to the machine's PostgreSQL, started and stopped by the test:
    a database that is unreachable, then reachable, at the same address."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self._listener: socket.socket | None = None
        self._closing = threading.Event()

    def start(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=True)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def close(self) -> None:
        self._closing.set()
        if self._listener is not None:
            self._listener.close()

    def _accept(self, listener: socket.socket) -> None:
        while not self._closing.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", 5432))
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(source, target), daemon=True).start()


def _pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            target.sendall(chunk)
    except OSError:
        pass
    finally:
        for end in (source, target):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)


def test_postgresql_unreachable_does_not_stop_serving_and_spilled_records_arrive(
    tmp_path: Path, postgresql: str
) -> None:
    proxy = PostgresProxy()
    url = postgresql.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    repo = repository(tmp_path / "repo", "  log: {sample_rate: 1.0}\n")
    rows = np.random.default_rng(6).normal(size=(1, 4)).astype(np.float32)
    try:
        with (
            run_server(repo, "--store", url, "--state-dir", str(tmp_path / "state")) as server,
            httpx.Client(base_url=server.http_url, timeout=CLIENT_TIMEOUT_S) as http,
        ):
            for index in range(20):
                infer(http, rows, f"spilled-{index}")
            wait_for(
                lambda: (
                    metric(http, "serval_prediction_log_records_total", outcome="spilled") == 20.0
                ),
                "20 records spilled",
            )
            ready = http.get("/v2/health/ready").json()
            assert ready["ready"] is True and "unreachable" in ready["degraded"][0]
            # The feedback API keeps ground truth with the store down (spilled, on disk).
            reply = http.post(
                "/v2/models/classifier/feedback", json={"id": "spilled-0", "ground_truth": 1}
            )
            assert reply.status_code == 200
            assert http.get("/v2/models/classifier/evaluation").status_code == 503
            proxy.start()
            wait_for(lambda: "degraded" not in http.get("/v2/health/ready").json(), "recovery")
            wait_for(lambda: logged(http) == 20, "the spilled records in the store")
    finally:
        proxy.close()
