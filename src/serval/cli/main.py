"""``serval``: the entry point; one module per subcommand."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from serval import __version__
from serval.cli import convert, models, optimize, serve


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="serval", description="A model server.")
    parser.add_argument("--version", action="version", version=f"serval {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve.register(commands)
    models.register(commands)
    convert.register(commands)
    optimize.register(commands)
    args = parser.parse_args(argv)
    result: int = args.run(args)
    return result
