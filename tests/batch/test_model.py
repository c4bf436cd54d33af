"""``BatchModel``: the folder loaded as the server loads it, ``--version`` and ``--threads``."""

from __future__ import annotations

from pathlib import Path

import pytest

from serval.batch.errors import BatchInputError
from serval.batch.model import BatchModel, with_threads
from serval.core.model_spec import ModelSpec
from tests.batch.data import repository


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return repository(tmp_path_factory.mktemp("repo"))


def test_threads_set_the_runtime_option_and_keep_the_rest(repo: Path) -> None:
    spec = ModelSpec.parse({"runtime_options": {"graph_optimization_level": "basic"}}, source="t")
    threaded = with_threads(spec, "lin", repo / "lin" / "1", 3)
    assert threaded.runtime_options == {"graph_optimization_level": "basic", "intra_op_threads": 3}
    pipeline = ModelSpec.parse(
        {
            "pipeline": {
                "steps": [{"name": "a", "model": "lin", "inputs": {"x": "inputs.x"}}],
                "outputs": {"y": "a.y"},
            }
        },
        source="t",
    )
    assert with_threads(pipeline, "p", repo / "p" / "1", 3) is pipeline


def test_a_version_and_threads_load_that_version(repo: Path) -> None:
    with BatchModel(repo / "lin", version=1, threads=1) as model:
        assert model.served_version == 1
        assert model.spec.runtime_options == {"intra_op_threads": 1}


def test_a_missing_version_or_folder_is_named(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(
        BatchInputError, match=r"--version 9: model 'lin' has no version 9 \(versions found: 1, 2\)"
    ):
        BatchModel(repo / "lin", version=9).open()
    with pytest.raises(BatchInputError, match="does not exist"):
        BatchModel(tmp_path / "nowhere")
