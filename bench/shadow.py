"""Primary latency with a shadow version against none: p50 at one connection, tiny model.

Starts two real servers: ``plain``, whose ``tiny`` model serves versions 1 and 2 with no
traffic policy, and ``shadowed``, the same model with the shadow policy of ``--traffic`` in its
model.yaml (default: version 1 answers, version 2 shadows every request), or
``--repository``: a repository of your own whose model.yaml holds the policy. Sends one-row
V2 JSON requests over one keep-alive connection, in rounds that alternate between the two
servers (an idle server costs nothing, and alternating spreads the machine's noise over both),
after a warm-up. Reports p50, p90 and p99 of each, the ratio of the p50s (issue 12's target: at
most 1.2 on a 2-core machine), the server's CPU time per request (what a shadow costs, less
exposed to the machine's noise than latency), and the shadow copies the shadowed server
counted (``serval_shadow_requests_total``), so that a policy that did not apply cannot pass for
a fast one.

Usage: python bench/shadow.py [--requests 2000] [--rounds 3] [--model tiny]
                              [--traffic YAML | --repository PATH]
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

import httpx
import models
import numpy as np
import onnx
import servers

# Version 1 answers, version 2 gets a copy of every request (a shadow alone would answer with
# the highest version, 2, and a shadow of the answering version itself is never sent).
SHADOW_POLICY = 'traffic: {routes: {"1": 1}, shadow: {versions: ["2"], sample: 1.0}}\n'
_SHADOW_COUNT = re.compile(r"^serval_shadow_requests_total\{[^}]*\} ([0-9.e+]+)$", re.M)


def write_repository(root: Path, name: str, traffic: str) -> Path:
    """``root/<name>/{1,2}/model.onnx`` (the same graph) and a model.yaml serving both."""
    spec = models.MODELS[name]
    for version in (1, 2):
        folder = root / name / str(version)
        folder.mkdir(parents=True, exist_ok=True)
        onnx.save(models.build(name), folder / "model.onnx")
    yaml = models.model_yaml(spec, intra_op_threads=1, max_queue_size=1024)
    (root / name / "model.yaml").write_text(f"{yaml}version_policy: all\n{traffic}")
    return root


def latencies(client: httpx.Client, name: str, body: bytes, count: int) -> list[float]:
    """Seconds per request, one at a time."""
    took = []
    for _ in range(count):
        started = time.perf_counter()
        reply = client.post(f"/v2/models/{name}/infer", content=body)
        took.append(time.perf_counter() - started)
        reply.raise_for_status()
    return took


def summary(seconds: list[float]) -> str:
    p50, p90, p99 = np.percentile(np.array(seconds) * 1e3, [50, 90, 99])
    return f"p50 {p50:.3f} ms  p90 {p90:.3f} ms  p99 {p99:.3f} ms  ({len(seconds)} requests)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="per server and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", default="tiny", choices=sorted(models.MODELS))
    parser.add_argument("--traffic", default=SHADOW_POLICY, help="model.yaml lines (shadowed)")
    parser.add_argument("--repository", type=Path, help="the shadowed server's repository")
    args = parser.parse_args()
    row = models.single_row(args.model)
    x = {"name": "x", "datatype": "FP32", "shape": list(row.shape), "data": row.ravel().tolist()}
    body = httpx.Request("POST", "/", json={"inputs": [x]}).content
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        plain_repo = write_repository(root / "plain", args.model, "")
        shadow_repo = args.repository or write_repository(
            root / "shadowed", args.model, args.traffic
        )
        runs = {
            "plain": servers.serval(plain_repo, [args.model], root, ["--grpc-port", "0"]),
            "shadowed": servers.serval(shadow_repo, [args.model], root, ["--grpc-port", "0"]),
        }
        runs["shadowed"].log_path = root / "shadowed.log"
        taken: dict[str, list[float]] = {label: [] for label in runs}
        cpu = dict.fromkeys(runs, 0.0)
        try:
            for server in runs.values():
                server.start()
            clients = {label: httpx.Client(base_url=s.http_url) for label, s in runs.items()}
            for client in clients.values():
                latencies(client, args.model, body, 200)  # warm-up
            for _ in range(args.rounds):
                for label, client in clients.items():
                    before = servers.cpu_seconds(runs[label].pid)
                    taken[label] += latencies(client, args.model, body, args.requests)
                    cpu[label] += servers.cpu_seconds(runs[label].pid) - before
            metrics = clients["shadowed"].get("/metrics").text
            copies = sum(float(value) for value in _SHADOW_COUNT.findall(metrics))
        finally:
            for server in runs.values():
                server.stop()
    for label, seconds in taken.items():
        per_request_us = cpu[label] / len(seconds) * 1e6
        print(f"{label:9s} {summary(seconds)}  server CPU {per_request_us:.0f} us/request")
    ratio = np.percentile(taken["shadowed"], 50) / np.percentile(taken["plain"], 50)
    print(f"p50 shadowed / plain: {ratio:.3f} (target <= 1.2); shadow copies counted: {copies:.0f}")
    if not copies:
        print("no shadow copy ran: the shadowed server's policy did not apply")


if __name__ == "__main__":
    main()
