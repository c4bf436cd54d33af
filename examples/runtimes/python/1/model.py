"""A keyword sentiment model: a stand-in for anything written in Python."""

import asyncio

from serval import InvalidInputError, ServingModel, TensorInfo, signature


class Sentiment(ServingModel):
    inputs = [TensorInfo("text", "BYTES")]
    outputs = [TensorInfo("label", "BYTES"), TensorInfo("score", "FP64")]
    input_format = "strings"  # BYTES inputs arrive as lists of str

    def load(self):
        lines = (self.path / "words.txt").read_text(encoding="utf-8").splitlines()
        self.weights = {w: float(weight) for w, weight in (line.split() for line in lines)}

    def preprocess(self, data):
        if any(not text.strip() for text in data["text"]):
            raise InvalidInputError("every text must hold at least one word")
        return [text.lower().split() for text in data["text"]]

    def predict(self, documents):
        """Cheap: one score per text."""
        scores = [sum(self.weights.get(w, 0.0) for w in words) for words in documents]
        return {"score": scores}

    @signature(outputs=[TensorInfo("contributions", "BYTES")])
    async def explain(self, documents):
        """Expensive (pretend): which words moved the score."""
        await asyncio.sleep(0)
        return [
            " ".join(f"{w}:{self.weights[w]:+g}" for w in words if w in self.weights)
            for words in documents
        ]

    def postprocess(self, outputs):
        if "score" in outputs:
            outputs["label"] = ["positive" if s > 0 else "negative" for s in outputs["score"]]
        return outputs
