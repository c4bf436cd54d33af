"""Runtimes: each turns a model artifact into a ``Predictor``. Imported lazily by name."""
