"""The custom Python model the TF Serving tests (gRPC and V1 REST) share: ``predict`` shouts
the text (BYTES ``loud``); the signature ``length`` counts its characters (INT64)."""

from __future__ import annotations

SHOUT = """
    from serval import ServingModel, TensorInfo, signature


    class Shout(ServingModel):
        inputs = [TensorInfo("text", "BYTES")]
        outputs = [TensorInfo("loud", "BYTES")]
        input_format = "strings"

        def predict(self, data):
            return [text.upper() + "!" for text in data["text"]]

        @signature(outputs=[TensorInfo("length", "INT64")])
        def length(self, data):
            return {"length": [len(text) for text in data["text"]]}
"""
