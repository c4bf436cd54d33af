"""What a sticky traffic policy costs per request, counted in CPU instructions (no noise).

bench/rollout_cost.py times the policy's work on the event loop; on a shared 2-core machine
those timings wander by more than the policy costs. This counts instructions instead, as
bench/observability_instructions.py does: valgrind's callgrind runs rollout_cost's in-process
harness (sequential one-row V2 JSON requests to ``tiny`` versions 1 and 2 through the REST
app, no sockets, each request with its own x-user-id) for each variant, twice, with ``SMALL``
and ``LARGE`` requests; the difference divided by ``LARGE - SMALL`` is the instructions per
request, with start-up, imports and model loading cancelled out. Counted on the main thread,
the event loop: where the sticky header is read, the version chosen, the request record
accounted and the metrics journal folded. Requests one at a time run alone (batches of one)
on either server, so what differs is the policy's own work, not the split of the batches
(bench/rollout.py ``--control`` measures that). Hash randomisation is off so that runs repeat.

Variants: ``none`` (no traffic section), ``policy`` (``routes: {"1": 50, "2": 50}``, sticky by
x-user-id), ``control`` (the same with ``routes: {"1": 1, "2": 99}``).

Usage: python bench/rollout_instructions.py [SMALL] [LARGE]   (needs valgrind; about 8
minutes for the defaults 200 and 1200 on 2 cores).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import callgrind  # noqa: E402 - beside this file

VARIANTS = ("none", "policy", "control")


def child(variant: str, requests: int) -> None:
    """Build the variant's app, warm it up, send ``requests`` requests."""
    sys.path.insert(0, str(BENCH.parent))
    from bench import rollout_cost as harness  # noqa: PLC0415 - the harness beside this file
    from bench.rollout import CONTROL_ROUTES, ROUTES, policy, repository  # noqa: PLC0415
    from serval.app import build  # noqa: PLC0415
    from serval.config import Settings  # noqa: PLC0415

    traffic = {"none": "", "policy": policy(ROUTES), "control": policy(CONTROL_ROUTES)}[variant]

    async def run() -> None:
        with tempfile.TemporaryDirectory() as folder:
            root = repository(Path(folder) / variant, traffic)
            server = build(Settings(model_repository=root, grpc_port=0))
            await server._manager.start()
            payload = harness.body()
            await harness.batch(server._rest_app, 100, 0, payload)  # warm-up: first calls
            await harness.batch(server._rest_app, requests, 1000, payload)
            await server._manager.stop()

    asyncio.run(run())


def count(variant: str, requests: int) -> int:
    """Instructions the main thread ran for the whole child process."""
    return callgrind.count(__file__, variant, requests)


def main(small: int, large: int) -> None:
    per_request = callgrind.per_request(__file__, VARIANTS, small, large)
    for variant, instructions in per_request.items():
        print(f"{variant:8} {instructions:12,.0f} instructions per request")
    for a, b in (("policy", "none"), ("control", "none"), ("policy", "control")):
        extra = per_request[a] - per_request[b]
        print(f"{a} vs {b}: {extra:+,.0f} instructions ({100 * extra / per_request[b]:+.2f}%)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]))
    else:
        main(
            int(sys.argv[1]) if len(sys.argv) > 1 else 200,
            int(sys.argv[2]) if len(sys.argv) > 2 else 1200,
        )
