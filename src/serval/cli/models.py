"""``serval models list|load|unload``: the repository API of a running server."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8080"
_URL_HELP = f"the server's REST address (default {DEFAULT_URL})"


def register(commands: Any, summary: str) -> None:
    parser = commands.add_parser("models", help=summary)
    parser.add_argument("--url", default=DEFAULT_URL, help=_URL_HELP)
    # --url also after the action (`serval models list --url URL`); SUPPRESS: an action
    # without it keeps the value given before it, or the default.
    url_after = argparse.ArgumentParser(add_help=False)
    url_after.add_argument("--url", default=argparse.SUPPRESS, help=_URL_HELP)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", parents=[url_after], help="every model and version with its state")
    for action in ("load", "unload"):
        sub = actions.add_parser(action, parents=[url_after], help=f"{action} a model")
        sub.add_argument("name", help=f"the model to {action}")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        with httpx.Client(base_url=args.url, timeout=600.0) as client:
            if args.action == "list":
                response = client.post("/v2/repository/index", json={})
            else:
                response = client.post(f"/v2/repository/models/{args.name}/{args.action}")
    except httpx.HTTPError as exc:
        print(f"serval models: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    if response.status_code != 200:
        message = _error_message(response)
        print(f"serval models {args.action}: {message}", file=sys.stderr)
        return 1
    if args.action == "list":
        _print_index(response.json())
    else:
        print(f"{args.name}: {args.action}ed")
    return 0


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", response.text))
    except ValueError:
        return f"HTTP {response.status_code}: {response.text}"


def _print_index(rows: list[dict[str, Any]]) -> None:
    table = [("MODEL", "VERSION", "STATE", "REASON")]
    table += [
        (r["name"], r.get("version", "-"), r.get("state", ""), r.get("reason", "")) for r in rows
    ]
    widths = [max(len(str(row[i])) for row in table) for i in range(3)]
    for row in table:
        print(
            "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False))
            + "  "
            + str(row[3])
        )
