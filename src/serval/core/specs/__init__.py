"""The sections of ``model.yaml`` beyond the request path (traffic, composite models, keys...),
one module each; ``core.model_spec`` assembles them into the ``ModelSpec``."""
