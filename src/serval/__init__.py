"""serval: a model server speaking the Open Inference Protocol and TF Serving's REST API."""

__version__ = "0.1.0"
