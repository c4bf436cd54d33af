"""What metrics and request ids cost per request, counted in CPU instructions (no noise).

Timings on a shared 2-core machine wander by more than the few percent this is about, so this
counts instructions instead: valgrind's callgrind runs the in-process harness of
``bench/observability_cost.py`` (one-row V2 JSON requests to the bundled ``classifier``
through the REST app, no sockets) for each variant, twice, with ``SMALL`` and ``LARGE``
requests; the difference divided by ``LARGE - SMALL`` is the instructions per request, with
start-up, imports and model loading cancelled out. Counted on the main thread, the event
loop: where decoding, encoding, metrics and request ids run, and what bounds an
overhead-bound server (the inference thread's count varies from run to run with how its
waits fall; the loop's does not). Hash randomisation is off (``PYTHONHASHSEED=0``) so that
runs repeat.

Variants: ``defaults`` (metrics on, access log off, tracing off), ``no-metrics``, ``bare``
(``no-metrics`` and request ids replaced by a constant).

Usage: python bench/observability_instructions.py [SMALL] [LARGE]   (needs valgrind; about
8 minutes for the defaults 200 and 3200 on 2 cores). Start-up varies by a few million
instructions between runs, so LARGE - SMALL should be a few thousand.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import callgrind  # noqa: E402 - beside this file

VARIANTS = ("defaults", "no-metrics", "bare")


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
    """Instructions the main thread ran for the whole child process."""
    return callgrind.count(__file__, variant, requests)


def main(small: int, large: int) -> None:
    per_request = callgrind.per_request(__file__, VARIANTS, small, large)
    for variant, instructions in per_request.items():
        print(f"{variant:10} {instructions:12,.0f} instructions per request")
    for a, b in (("defaults", "no-metrics"), ("no-metrics", "bare"), ("defaults", "bare")):
        extra = per_request[a] - per_request[b]
        print(f"{a} vs {b}: {extra:+,.0f} instructions ({100 * extra / per_request[b]:+.2f}%)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]))
    else:
        main(
            int(sys.argv[1]) if len(sys.argv) > 1 else 200,
            int(sys.argv[2]) if len(sys.argv) > 2 else 3200,
        )
