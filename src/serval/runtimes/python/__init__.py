"""Custom Python models: ``model.py`` defines a subclass of ``serval.ServingModel``."""
