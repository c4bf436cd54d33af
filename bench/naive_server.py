"""The naive peer: the classic tutorial model server, FastAPI + uvicorn calling onnxruntime.

A pydantic request model, a plain ``def`` endpoint (FastAPI runs it in its thread pool), one
onnxruntime session per model, ``session.run`` per request: no batching. The endpoint takes and
answers V2-shaped JSON at the V2 paths, so the same wrk script drives it and serval.

Runs in its own venv (fastapi, uvicorn[standard], onnxruntime, numpy), never in serval's:
``NAIVE_REPOSITORY=... NAIVE_MODELS=tiny,mlp NAIVE_THREADS=1 uvicorn naive_server:app
--app-dir bench --workers N``. Each uvicorn worker loads the models.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel


def _load() -> dict[str, ort.InferenceSession]:
    repository = Path(os.environ["NAIVE_REPOSITORY"])
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(os.environ.get("NAIVE_THREADS", "1"))
    options.inter_op_num_threads = 1
    return {
        name: ort.InferenceSession(
            str(repository / name / "1" / "model.onnx"),
            options,
            providers=["CPUExecutionProvider"],
        )
        for name in os.environ["NAIVE_MODELS"].split(",")
    }


SESSIONS = _load()
app = FastAPI()


class InferInput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[float]


class InferRequest(BaseModel):
    id: str | None = None
    inputs: list[InferInput]


@app.get("/v2/health/ready")
def ready() -> dict[str, bool]:
    return {"ready": True}


@app.post("/v2/models/{model_name}/infer")
def infer(model_name: str, request: InferRequest) -> dict[str, object]:
    session = SESSIONS.get(model_name)
    if session is None:
        raise HTTPException(status_code=404, detail=f"unknown model {model_name}")
    feeds = {
        tensor.name: np.asarray(tensor.data, dtype=np.float32).reshape(tensor.shape)
        for tensor in request.inputs
    }
    names = [output.name for output in session.get_outputs()]
    results = session.run(names, feeds)
    return {
        "model_name": model_name,
        "id": request.id,
        "outputs": [
            {
                "name": name,
                "datatype": "FP32",
                "shape": list(result.shape),
                "data": result.ravel().tolist(),
            }
            for name, result in zip(names, results, strict=True)
        ],
    }
