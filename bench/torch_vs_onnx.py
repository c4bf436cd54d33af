"""serval serving the bench ``mlp`` as ONNX and as a torch.export program (the same weights), in
one server, alternately: rows/s at 64 connections and p50 at one connection (wrk, V2 JSON), and
the frameworks called in-process, for the ratios issue 19 asks for.

Run: ``python bench/torch_vs_onnx.py --threads 1 --rounds 2`` (needs the ``torch`` extra).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from onnx import numpy_helper

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import load, models  # noqa: E402
from serval.testing import run_server  # noqa: E402

TORCH_MODEL = "mlp_torch"


class _Named(torch.nn.Module):
    """The MLP with its output named ``y``, as in the ONNX graph."""

    def __init__(self, layers: torch.nn.Sequential) -> None:
        super().__init__()
        self.layers = layers

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"y": self.layers(x)}


def torch_mlp() -> torch.nn.Module:
    """The ONNX ``mlp``'s Gemm weights in torch Linear layers (Gemm computes x @ W + b)."""
    weights = {t.name: numpy_helper.to_array(t) for t in models.build("mlp").graph.initializer}
    layers: list[torch.nn.Module] = []
    for name in ("h1", "h2", "y"):
        weight, bias = weights[f"{name}_w"], weights[f"{name}_b"]
        linear = torch.nn.Linear(*weight.shape)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight.T)))
            linear.bias.copy_(torch.from_numpy(np.array(bias)))
        layers += [linear, torch.nn.ReLU()]
    return _Named(torch.nn.Sequential(*layers[:-1])).eval()


def write_torch_model(repository: Path, module: torch.nn.Module) -> None:
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(
        module, (torch.zeros(2, models.MODELS["mlp"].features),), dynamic_shapes={"x": {0: batch}}
    )
    folder = repository / TORCH_MODEL / "1"
    folder.mkdir(parents=True)
    torch.export.save(program, folder / "model.pt2")
    # The same batching and threads as the ONNX model.
    (repository / TORCH_MODEL / "model.yaml").write_text(
        (repository / "mlp" / "model.yaml").read_text()
    )


def p50_ms(call: Callable[[], Any], count: int) -> float:
    call()
    times = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def in_process(module: torch.nn.Module, threads: int, rows: int) -> tuple[float, float]:
    """p50 ms of onnxruntime and torch on ``rows`` rows, ``threads`` intra-op threads."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(
        models.build("mlp").SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    torch.set_num_threads(threads)
    x = np.repeat(models.single_row("mlp"), rows, axis=0)
    tensor = torch.from_numpy(x)
    count = 300 if rows == 1 else 60
    with torch.inference_mode():
        np.testing.assert_allclose(
            module(tensor)["y"].numpy(), session.run(["y"], {"x": x})[0], rtol=1e-4, atol=1e-4
        )
        return (
            p50_ms(lambda: session.run(["y"], {"x": x}), count),
            p50_ms(lambda: module(tensor), count),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads, both models")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    module = torch_mlp()
    with tempfile.TemporaryDirectory() as work:
        root = Path(work)
        repository = models.write_repository(root / "repo", ["mlp"], args.threads, 1024)
        write_torch_model(repository, module)
        for rows in (1, 64):
            onnx_ms, torch_ms = in_process(module, args.threads, rows)
            print(f"in-process p50, {rows} rows: onnxruntime {onnx_ms:.2f} ms, ", end="")
            print(f"torch {torch_ms:.2f} ms")
        bodies = load.write_bodies(root / "bodies", "mlp", models.single_row("mlp"))
        with run_server(repository, grpc=False) as server:
            for round_ in range(args.rounds):
                for model in ("mlp", TORCH_MODEL):
                    many = load.wrk(server.http_url, model, bodies["json"], 64, args.seconds)
                    one = load.wrk(server.http_url, model, bodies["json"], 1, args.seconds / 2)
                    print(
                        f"round {round_} {model:9s}: 64 connections {many.rps:7.0f} rows/s "
                        f"(errors {many.errors}), 1 connection p50 {one.p50_ms:.2f} ms"
                    )


if __name__ == "__main__":
    main()
