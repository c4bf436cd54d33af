"""What a crossed threshold sets off: alerts raised once, webhooks retried in the
background, retraining triggers at most once per cooldown."""
