"""What a pipeline step costs, counted in CPU instructions (no noise): the event loop thread's
instructions per request of ``tiny``, the two-step pipeline ``tiny2`` and ``tiny+call`` (a
request to ``tiny`` and a direct second batched call: the floor of a two-step pipeline).

valgrind's callgrind runs ``bench/composition_cost.py``'s in-process harness (the REST app
driven directly by 64 concurrent clients, uvloop where installed) for each variant, twice,
with ``SMALL`` and ``LARGE`` requests after a warm-up; the difference divided by ``LARGE -
SMALL`` is the instructions per request, start-up and model loading cancelled out. Counted on
the main thread (the event loop), as ``bench/observability_instructions.py`` does; hash
randomisation off (``PYTHONHASHSEED=0``). valgrind runs one thread at a time, so batches form
differently than on a real machine: compare variants of one run, not with wall-clock numbers.

Usage: python bench/composition_instructions.py [SMALL] [LARGE]   (needs valgrind; about 10
minutes for the defaults 256 and 2560 on 2 cores). Set ``PYTHONPATH`` to the source tree to
measure (e.g. another worktree's ``src``).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import callgrind  # noqa: E402 - beside this file

VARIANTS = ("tiny", "tiny2", "tiny+call")
CLIENTS = 64


def child(variant: str, requests: int) -> None:
    """Build the server of ``composition_cost``, warm up, send ``requests`` requests."""
    sys.path.insert(0, str(BENCH.parent))
    from bench import composition_cost as harness  # noqa: PLC0415 - the harness beside this
    from serval.app import build  # noqa: PLC0415
    from serval.config import Settings  # noqa: PLC0415

    async def run(repository: Path) -> None:
        server = build(Settings(model_repository=repository, grpc_port=0))
        await server._manager.start()
        one = harness.variants(server)[variant]
        await harness.batch(one, 4 * CLIENTS, CLIENTS)  # warm-up: first-call paths, plans
        await harness.batch(one, requests, CLIENTS)
        await server._manager.stop()

    with tempfile.TemporaryDirectory() as temp:
        harness.run_loop(run(harness.write(Path(temp))))


def count(variant: str, requests: int) -> int:
    """Instructions the main thread ran for the whole child process."""
    return callgrind.count(__file__, variant, requests)


def main(small: int, large: int) -> None:
    per_request = callgrind.per_request(__file__, VARIANTS, small, large)
    for variant, instructions in per_request.items():
        ratio = per_request["tiny"] / instructions
        print(f"{variant:10} {instructions:12,.0f} instructions per request  tiny / it {ratio:.3f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]))
    else:
        main(
            int(sys.argv[1]) if len(sys.argv) > 1 else 256,
            int(sys.argv[2]) if len(sys.argv) > 2 else 2560,
        )
