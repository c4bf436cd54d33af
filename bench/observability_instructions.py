"""What metrics and request ids cost per request, counted in CPU instructions (no noise).

Timings on a shared 2-core machine wander by more than the few percent this is about, so this
counts instructions instead: valgrind's callgrind runs the in-process harness of
``bench/observability_cost.py`` (one-row V2 JSON requests to the bundled ``classifier``
through the REST app, no sockets) for each variant, twice, with ``SMALL`` and ``LARGE``
requests; the difference divided by ``LARGE - SMALL`` is the instructions per request, with
start-up, imports and model loading cancelled out. Counted over every thread (the event loop
and the inference thread), so it is what a request costs the machine.

Variants: ``defaults`` (metrics on, access log off, tracing off), ``no-metrics``, ``bare``
(``no-metrics`` and request ids replaced by a constant).

Usage: python bench/observability_instructions.py [SMALL] [LARGE]   (needs valgrind; about
10 minutes for the defaults 200 and 1200)
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
VARIANTS = ("defaults", "no-metrics", "bare")
_COLLECTED = re.compile(rb"Collected : (\d+)")


def child(variant: str, requests: int) -> None:
    """Build the variant's app, warm it up, send ``requests`` requests."""
    sys.path.insert(0, str(BENCH))
    import observability_cost as harness  # noqa: PLC0415 - the harness beside this file

    from serval.app import build  # noqa: PLC0415
    from serval.config import Settings  # noqa: PLC0415
    from serval.protocols.rest import v2_infer  # noqa: PLC0415

    async def run() -> None:
        settings = {} if variant == "defaults" else {"metrics": False}
        server = build(
            Settings(model_repository=BENCH.parent / "examples" / "models", grpc_port=0, **settings)
        )
        await server._manager.start()
        if variant == "bare":
            v2_infer.begin_request = harness.constant_request  # type: ignore[assignment]
        await harness.batch(server._rest_app, 50)  # warm-up: first-call paths, caches
        await harness.batch(server._rest_app, requests)
        await server._manager.stop()

    asyncio.run(run())


def count(variant: str, requests: int) -> int:
    with tempfile.TemporaryDirectory() as folder:
        result = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={folder}/callgrind.out",
                sys.executable,
                __file__,
                "--child",
                variant,
                str(requests),
            ],
            capture_output=True,
            check=True,
        )
    match = _COLLECTED.search(result.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count from valgrind: {result.stderr[-2000:]!r}")
    return int(match.group(1))


def main(small: int, large: int) -> None:
    per_request = {}
    for variant in VARIANTS:
        difference = count(variant, large) - count(variant, small)
        per_request[variant] = difference / (large - small)
        print(f"{variant:10} {per_request[variant]:12,.0f} instructions per request", flush=True)
    for a, b in (("defaults", "no-metrics"), ("no-metrics", "bare"), ("defaults", "bare")):
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
