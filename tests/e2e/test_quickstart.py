"""docs/quickstart.md's "serve your own model", run as written: the blocks marked
``<!-- quickstart-test: NAME -->`` are the files and commands a reader copies."""

from __future__ import annotations

import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from serval.testing import run_server

pytestmark = pytest.mark.e2e
pytest.importorskip("skops")
pytest.importorskip("tritonclient.http")

QUICKSTART = Path(__file__).parents[2] / "docs" / "quickstart.md"
MARKED = re.compile(r"<!-- quickstart-test: (\S+) -->\n```\w*\n(.*?)```", re.DOTALL)


def blocks() -> dict[str, str]:
    return dict(MARKED.findall(QUICKSTART.read_text()))


def shell(script: str, cwd: Path) -> str:
    """Run a block as a reader would, with this interpreter as ``python`` and ``serval``."""
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script.replace("python ", f"{sys.executable} ")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def expected_output(block: str) -> list[str]:
    """The ``# ...`` lines under the command: what the page says it prints."""
    return [line[2:] for line in block.splitlines() if line.startswith("# ")]


def run_python(source: str, path: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """``python FILE`` in this process (the frameworks are imported once): what it prints."""
    path.write_text(source)
    capsys.readouterr()
    runpy.run_path(str(path), run_name="__main__")
    return capsys.readouterr().out.splitlines()


def test_serve_your_own_scikit_learn_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    page = blocks()
    assert set(page) >= {"train.py", "my-models/iris/model.yaml", "curl", "query.py", "convert"}
    monkeypatch.chdir(tmp_path)
    printed = run_python(page["train.py"], tmp_path / "train.py", capsys)
    assert printed == ["['sklearn.tree._tree.Tree']"]
    (tmp_path / "my-models" / "iris" / "model.yaml").write_text(page["my-models/iris/model.yaml"])

    converted = shell(page["convert"], tmp_path)
    assert converted.splitlines()[0] == expected_output(page["convert"])[0]
    assert "wrote my-models/iris-onnx/1/model.onnx" in converted

    with run_server(tmp_path / "my-models", grpc=False) as server:
        address = server.http_url.removeprefix("http://")
        answer = shell(page["curl"].replace("localhost:8080", address), tmp_path)
        assert '"predict","datatype":"INT64","shape":[2],"data":[0,2]' in answer
        for model in ("iris", "iris-onnx"):
            query = page["query.py"].replace("localhost:8080", address)
            printed = run_python(
                query.replace('"iris"', f'"{model}"'), tmp_path / "query.py", capsys
            )
            assert printed[0] == "[0 2]", (model, printed)
