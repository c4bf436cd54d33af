"""``serval monitor report`` run as a user runs it, its HTML opened in headless Chromium
(Debian ``chromium``: scripts/install-system-packages.sh installs it): every plot rendered
with a visible size (the report's own script counts them into ``<body data-plots-drawn>``),
the expected plots are there, and a screenshot of the page is not blank."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from tests.evaluation.monitored_store import MODEL, build

# Quality over time, drift per feature, the prediction against the reference's labels, and
# the three features' distributions.
EXPECTED_PLOTS = 6


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "headless Chromium is needed: run scripts/install-system-packages.sh"
    return found


def headless(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def test_report_plots_render_in_headless_chromium(tmp_path: Path) -> None:
    monitored = build(tmp_path)
    out = tmp_path / "report.html"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "serval",
            "monitor",
            "report",
            MODEL,
            "--out",
            str(out),
            "--repository",
            str(monitored.repository),
            "--state-dir",
            str(monitored.state_dir),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"{EXPECTED_PLOTS} plots" in done.stdout
    page = out.read_text(encoding="utf-8")
    assert not re.search(r'(src|href)="(https?:|//)', page), "the report fetches nothing"
    for plot in ("quality", "drift", "distribution-prediction", "distribution-charges"):
        assert f'data-plot="{plot}"' in page

    dom = headless(tmp_path / "profile", "--dump-dom", out.as_uri()).stdout
    body = re.search(r"<body[^>]*>", dom)
    assert body is not None
    assert f'data-plots="{EXPECTED_PLOTS}"' in body.group(0)
    assert f'data-plots-drawn="{EXPECTED_PLOTS}"' in body.group(0)

    shot = tmp_path / "report.png"
    headless(tmp_path / "profile", "--window-size=1280,3000", f"--screenshot={shot}", out.as_uri())
    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("RGB"))
    coloured = np.count_nonzero((pixels < 200).any(axis=2))
    assert coloured > 0.02 * pixels.shape[0] * pixels.shape[1]
