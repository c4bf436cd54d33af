"""The ``serval`` command line."""
