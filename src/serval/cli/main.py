"""``serval``: the entry point; one module per subcommand.

Only the module of the command that runs is imported (as pip does), so ``serval serve`` does
not pay for the HTTP client of ``models`` or the converters of ``convert``, and those commands
do not pay for the server.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import sys
from collections.abc import Collection, Sequence
from types import ModuleType

from serval import __version__

# Command -> its line in ``serval --help``; serval.cli.<command> defines its arguments and runs.
COMMANDS = {
    "serve": "serve a model repository",
    "models": "list, load or unload models of a running server",
    "convert": "convert a scikit-learn, XGBoost, LightGBM, TensorFlow or PyTorch version to ONNX",
    "optimize": "optimize and quantize an ONNX model version",
    "monitor": "export or report a model's prediction log and ground truth",
    "batch": "score Parquet, CSV or JSON lines files with a model folder, locally or on Ray",
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # serval's own options take no value, so the first word that is not one is the command.
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    parser = build_parser({chosen} if chosen else set())
    args = parser.parse_args(argv)
    result: int = args.run(args)
    return result


def build_parser(registered: Collection[str]) -> argparse.ArgumentParser:
    """serval's parser, with the arguments of the commands in ``registered``; the others are
    listed in ``serval --help`` only."""
    parser = argparse.ArgumentParser(prog="serval", description="A model server.")
    parser.add_argument("--version", action="version", version=f"serval {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, summary in COMMANDS.items():
        if name in registered:
            _import_command(name).register(commands, summary)
        else:
            commands.add_parser(name, help=summary)  # listed, never parsed
    return parser


def _import_command(name: str) -> ModuleType:
    """Import a command's module with the garbage collector off, then freeze what it built.

    The imports (several hundred modules for ``serve``) allocate much and free almost nothing,
    and live as long as the process: collecting meanwhile, and walking them in every later
    full collection, is wasted work (about a tenth of the server's start-up). ``gc.freeze``
    moves them out of the collector's generations for good, as the server does again once
    its models are loaded (``server.py``).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        return importlib.import_module(f"serval.cli.{name}")
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
