"""Continuous evaluation (docs/evaluation.md): the sampled prediction log, ground truth joined
to it, quality per version, drift against the training reference, alerts and retraining
triggers, and the report. Above the stores (``serval.storage``), beside observability."""
