"""The command line's parsers: every option says what it does, and `serval models` takes
--url before or after its action."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from serval.cli.main import COMMANDS, build_parser
from serval.cli.models import DEFAULT_URL


def parsers(
    parser: argparse.ArgumentParser, path: str = "serval"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from parsers(sub, f"{path} {name}")


def test_every_option_of_every_command_has_help() -> None:
    root = build_parser(COMMANDS)
    found = list(parsers(root))
    assert {path for path, _ in found} >= {f"serval {name}" for name in COMMANDS}
    missing = [
        f"{path} {'/'.join(action.option_strings) or action.dest}"
        for path, parser in found
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction | argparse._SubParsersAction)
        and not action.help
    ]
    assert missing == []


@pytest.mark.parametrize(
    ("argv", "url"),
    [
        (["models", "list"], DEFAULT_URL),
        (["models", "--url", "http://a:1", "list"], "http://a:1"),
        (["models", "list", "--url", "http://b:2"], "http://b:2"),
        (["models", "load", "m", "--url", "http://c:3"], "http://c:3"),
        (["models", "unload", "--url", "http://d:4", "m"], "http://d:4"),
        # After the action wins, as the later flag does anywhere else.
        (["models", "--url", "http://a:1", "list", "--url", "http://b:2"], "http://b:2"),
    ],
)
def test_models_url_before_or_after_the_action(argv: list[str], url: str) -> None:
    args = build_parser({"models"}).parse_args(argv)
    assert args.url == url
