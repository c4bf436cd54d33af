"""Settings whose defaults depend on where the server runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from serval.cli.main import COMMANDS, build_parser
from serval.cli.serve import settings_from_args
from serval.config import KUBERNETES_DRAIN_DELAY_S, Settings


def test_drain_delay_is_0_for_a_plain_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("SERVAL_DRAIN_DELAY_S", raising=False)
    assert Settings(model_repository=tmp_path).drain_delay_s == 0.0


def test_drain_delay_waits_for_kubernetes_endpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.delenv("SERVAL_DRAIN_DELAY_S", raising=False)
    assert KUBERNETES_DRAIN_DELAY_S == 5.0
    assert Settings(model_repository=tmp_path).drain_delay_s == KUBERNETES_DRAIN_DELAY_S
    # The environment variable and the flag win over the detected default.
    monkeypatch.setenv("SERVAL_DRAIN_DELAY_S", "12")
    assert Settings(model_repository=tmp_path).drain_delay_s == 12.0
    args = build_parser(COMMANDS).parse_args(["serve", str(tmp_path), "--drain-delay-s", "0"])
    assert settings_from_args(args).drain_delay_s == 0.0


def test_a_negative_drain_delay_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="drain_delay_s"):
        Settings(model_repository=tmp_path, drain_delay_s=-1)
