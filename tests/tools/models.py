"""Native models for the tools' tests, written into a repository by tests/runtimes/builders.py."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from tests.runtimes import builders

MLP_TRUST = "sklearn.neural_network._stochastic_optimizers.AdamOptimizer"


def mlp_regressor(root: Path, name: str = "mlp") -> builders.Expected:
    """An MLPRegressor (MatMul weights, something to quantize) that needs trusted_types."""
    import skops.io as sio  # noqa: PLC0415
    from sklearn.neural_network import MLPRegressor  # noqa: PLC0415

    features, _ = builders.training_data(rows=120)
    model = MLPRegressor(hidden_layer_sizes=(32, 32), max_iter=50, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # not converged: it does not need to be good
        model.fit(features, features @ np.array([1.0, -2.0, 0.5, 3.0]))
    sio.dump(model, builders.version_folder(root, name) / "model.skops")
    (root / name / "model.yaml").write_text(f"runtime_options:\n  trusted_types: [{MLP_TRUST}]\n")
    return lambda rows: {"predict": model.predict(rows)}


def versions(model_dir: Path) -> list[str]:
    return sorted(p.name for p in model_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def load(model_dir: Path, version: int) -> Any:
    """The version as the server loads it (its runtime chosen as the server chooses it)."""
    from serval.core.lifecycle.loader import LoadRequest  # noqa: PLC0415
    from serval.runtimes.registry import RuntimeRegistry  # noqa: PLC0415
    from serval.tools.versions import find_version  # noqa: PLC0415

    source = find_version(model_dir, version)
    request = LoadRequest(model_dir.name, version, source.path, source.spec)
    return RuntimeRegistry.default()(request).load()
