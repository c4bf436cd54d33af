"""Small TensorFlow models built by the tests: a Keras MLP saved as a SavedModel with two
signature defs (TF Serving's and Triton's layouts), as a SavedModel without
``serving_default``, and as a Keras 3 file. Each builder returns the framework's own answers.

TensorFlow is imported inside the builders so that a missing extra only skips its tests.
"""

# ruff: noqa: PLC0415 - imports inside builders, on purpose (above)

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

N_FEATURES = 4
N_SCORES = 3
# {signature: function of {input: array} -> {output: array}}
Answers = dict[str, Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]]


def features(rows: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, N_FEATURES)).astype(np.float32)


def keras_mlp(seed: int = 0) -> Any:
    """A functional MLP: input ``features`` [-1, 4] FP32, output ``scores`` [-1, 3] FP32."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(N_FEATURES,), name="features")
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    outputs = keras.layers.Dense(N_SCORES, name="scores")(hidden)
    return keras.Model(inputs, outputs)


def _module(model: Any, default: bool) -> tuple[Any, dict[str, Any]]:
    """A tf.Module with the signatures ``serving_default`` (or ``scores`` where ``default``
    is false) over the MLP, and ``length`` over strings (BYTES in, INT64 and BYTES out)."""
    import tensorflow as tf

    class Served(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        @tf.function(
            input_signature=[tf.TensorSpec([None, N_FEATURES], tf.float32, name="features")]
        )
        def scores(self, features: Any) -> dict[str, Any]:
            scores = self.model(features, training=False)
            return {"scores": scores, "best": tf.argmax(scores, axis=1)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def length(self, text: Any) -> dict[str, Any]:
            return {
                "length": tf.strings.length(text, unit="UTF8_CHAR"),
                "upper": tf.strings.upper(text, encoding="utf-8"),
            }

    served = Served()
    first = "serving_default" if default else "scores"
    return served, {first: served.scores, "length": served.length}


def saved_model(folder: Path, *, default: bool = True, seed: int = 0) -> Answers:
    """The MLP as a SavedModel in ``folder`` (two signature defs)."""
    import tensorflow as tf

    served, signatures = _module(keras_mlp(seed), default)
    tf.saved_model.save(served, str(folder), signatures=signatures)

    def answers(function: Any) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
        # tf.function methods hold their module weakly: the closure keeps it alive.
        def answer(feeds: dict[str, np.ndarray], kept: Any = served) -> dict[str, np.ndarray]:
            return {key: value.numpy() for key, value in function(**feeds).items()}

        return answer

    return {name: answers(function) for name, function in signatures.items()}


def tf_serving_layout(repo: Path, name: str, **kwargs: Any) -> Answers:
    """``<repo>/<name>/1/saved_model.pb`` + ``variables/``."""
    return saved_model(repo / name / "1", **kwargs)


def triton_layout(repo: Path, name: str, **kwargs: Any) -> Answers:
    """``<repo>/<name>/1/model.savedmodel/``."""
    return saved_model(repo / name / "1" / "model.savedmodel", **kwargs)


def keras_file(repo: Path, name: str, seed: int = 0) -> Answers:
    """``<repo>/<name>/1/model.keras``; its one signature is ``serving_default``."""
    model = keras_mlp(seed)
    folder = repo / name / "1"
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "model.keras")
    return {
        "serving_default": lambda feeds: {
            "scores": model(feeds["features"], training=False).numpy()
        }
    }
