"""Tensors: datatypes, the raw tensor codec and request validation."""
