"""What a running server is doing now, read from its /metrics: tests wait on these conditions
instead of sleeping."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

from serval.testing import RunningServer


@dataclass(frozen=True)
class Workload:
    inflight: float = 0.0  # requests inside the data plane: waiting or running
    waiting: float = 0.0  # requests in the model's own queue

    @property
    def running(self) -> float:
        return self.inflight - self.waiting


def workload(server: RunningServer, model: str) -> Workload:
    """The model's requests now, summed over its versions."""
    text = httpx.get(f"{server.http_url}/metrics", timeout=10).text
    values = {"serval_inflight_requests": 0.0, "serval_queue_depth": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in values and sample.labels.get("model") == model:
                values[sample.name] += sample.value
    return Workload(values["serval_inflight_requests"], values["serval_queue_depth"])


def wait_for_workload(
    server: RunningServer,
    model: str,
    condition: Callable[[Workload], bool],
    timeout_s: float = 30.0,
) -> Workload:
    """Poll until ``condition`` holds for the model's workload; fail past ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        now = workload(server, model)
        if condition(now):
            return now
        if time.monotonic() > deadline:
            raise AssertionError(f"{model}: workload still {now} after {timeout_s} s")
        time.sleep(0.01)
