"""TensorFlow models for the convert tests: the Keras MLP of tests/runtimes/tf_builders.py as a
SavedModel whose one signature def is ``serving_default``. Imported only where TensorFlow is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tests.runtimes.tf_builders import N_FEATURES, keras_mlp


def single_signature(repo: Path, name: str) -> Any:
    """``<repo>/<name>/1/saved_model.pb``: ``features`` [-1, 4] FP32 -> ``scores`` [-1, 3]
    FP32 and ``best`` [-1] INT64; returns TensorFlow's own answers to ``features``."""
    model = keras_mlp()

    class Served(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        @tf.function(
            input_signature=[tf.TensorSpec([None, N_FEATURES], tf.float32, name="features")]
        )
        def serve(self, features: Any) -> dict[str, Any]:
            scores = self.model(features, training=False)
            return {"scores": scores, "best": tf.argmax(scores, axis=1)}

    served = Served()
    folder = repo / name / "1"
    tf.saved_model.save(served, str(folder), signatures={"serving_default": served.serve})

    def answers(features: np.ndarray, kept: Any = served) -> dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in kept.serve(features).items()}

    return answers
