"""The framework runtimes against ONNX (issue 19's targets): the ``mlp`` bench network built in
each framework with the same weights, served side by side by one server of the working tree.

- ``mlp_onnx``: the bench model (``bench/models.py``).
- ``mlp_torch``: the same layers as a TorchScript ``model.pt`` (needs torch).
- ``mlp_tf``: the same layers as a SavedModel (``saved_model.pb``; needs tensorflow).

Each has the bench's ``model.yaml`` (dynamic batching, one instance, one intra-op thread).
wrk sends one-row requests in the binary tensor extension: rows/s at ``--connections`` per
model, in interleaved rounds (target: each framework >= 0.9 x ONNX), then the p50 at one
connection, against the framework called in-process on one row plus serval's own overhead
on ONNX (serval's ONNX p50 minus onnxruntime's in-process p50; target: within 1.5 x).

Usage: python bench/runtimes.py [--connections 64] [--rounds 3] [--duration 5]
(run with an interpreter that has the frameworks; a missing one is left out and said so).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from bench.caching import run_wrk, stop  # noqa: E402
from bench.load import binary_body  # noqa: E402
from bench.models import MODELS, build, model_yaml, single_row  # noqa: E402
from bench.servers import start_tree  # noqa: E402

LAYERS = ("h1", "h2", "y")
DECLARED = (
    "inputs: [{name: x, datatype: FP32, shape: [-1, 512]}]\n"
    "outputs: [{name: y, datatype: FP32, shape: [-1, 16]}]\n"
)


def weights() -> list[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]]:
    """(W [in, out], b [out]) of each Gemm of the ONNX ``mlp``."""
    found = {init.name: numpy_helper.to_array(init) for init in build("mlp").graph.initializer}
    return [(found[f"{layer}_w"], found[f"{layer}_b"]) for layer in LAYERS]


def torch_model(folder: Path) -> Callable[[np.ndarray[Any, Any]], Any]:
    import torch  # noqa: PLC0415 - optional

    layers: list[torch.nn.Module] = []
    for index, (weight, bias) in enumerate(weights()):
        linear = torch.nn.Linear(*weight.shape)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(weight.T.copy()))
            linear.bias.copy_(torch.from_numpy(bias.copy()))
        layers.append(linear)
        if index < len(LAYERS) - 1:
            layers.append(torch.nn.ReLU())
    module = torch.jit.script(torch.nn.Sequential(*layers).eval())
    folder.mkdir(parents=True)
    module.save(str(folder / "model.pt"))
    torch.set_num_threads(1)

    def call(row: np.ndarray[Any, Any]) -> Any:
        with torch.inference_mode():
            return module(torch.from_numpy(row))

    return call


def tf_model(folder: Path) -> Callable[[np.ndarray[Any, Any]], Any]:
    import tensorflow as tf  # noqa: PLC0415 - optional

    tf.config.threading.set_intra_op_parallelism_threads(1)
    variables = [(tf.constant(w), tf.constant(b)) for w, b in weights()]

    class Mlp(tf.Module):  # type: ignore[misc]
        @tf.function(input_signature=[tf.TensorSpec([None, 512], tf.float32, name="x")])
        def serve(self, x: Any) -> dict[str, Any]:
            for index, (weight, bias) in enumerate(variables):
                x = tf.matmul(x, weight) + bias
                if index < len(variables) - 1:
                    x = tf.nn.relu(x)
            return {"y": x}

    module = Mlp()
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    function = tf.saved_model.load(str(folder)).signatures["serving_default"]
    return lambda row: function(x=tf.constant(row))


def onnx_call(path: Path) -> Callable[[np.ndarray[Any, Any]], Any]:
    import onnxruntime as ort  # noqa: PLC0415

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options)
    return lambda row: session.run(None, {"x": row})


def p50_us(call: Callable[[np.ndarray[Any, Any]], Any], row: np.ndarray[Any, Any]) -> float:
    for _ in range(50):
        call(row)
    times = []
    for _ in range(500):
        started = time.perf_counter()
        call(row)
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1e6)


def repository(root: Path) -> dict[str, Callable[[np.ndarray[Any, Any]], Any]]:
    """Write the models; their in-process calls by model name."""
    spec = model_yaml(MODELS["mlp"], 1, 4096)
    folder = root / "mlp_onnx" / "1"
    folder.mkdir(parents=True)
    onnx.save(build("mlp"), folder / "model.onnx")
    (root / "mlp_onnx" / "model.yaml").write_text(spec)
    calls = {"mlp_onnx": onnx_call(folder / "model.onnx")}
    builders = {"mlp_torch": ("torch", torch_model), "mlp_tf": ("tensorflow", tf_model)}
    for name, (package, builder) in builders.items():
        if importlib.util.find_spec(package) is None:
            print(f"{name}: {package} is not installed: left out")
            continue
        calls[name] = builder(root / name / "1")
        declared = DECLARED if name == "mlp_torch" else ""
        (root / name / "model.yaml").write_text(spec + declared)
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    row = single_row("mlp")
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        calls = repository(folder / "repo")
        body, header_len = binary_body(row)
        body_file = folder / "body.bin"
        body_file.write_bytes(body)
        process, port = start_tree(ROOT / "src", folder / "repo", folder / "serval.log")
        names = list(calls)
        rates: dict[str, list[float]] = {name: [] for name in names}
        latency: dict[str, list[float]] = {name: [] for name in names}
        try:
            for round_index in range(args.rounds):
                for name in names if round_index % 2 == 0 else reversed(names):
                    route = f"/v2/models/{name}/infer"
                    result = run_wrk(
                        port, route, body_file, args.connections, args.duration,
                        header_len=header_len,
                    )  # fmt: skip
                    rate = result["requests"] / (result["duration_us"] / 1e6)
                    rates[name].append(rate)
                    half = max(1, round(args.duration / 2))  # wrk takes whole seconds
                    one = run_wrk(port, route, body_file, 1, half, header_len=header_len)
                    latency[name].append(one["p50_us"])
                    print(
                        f"{name:10} {rate:8,.0f} rows/s at {args.connections}; "
                        f"p50 at 1 connection {one['p50_us'] / 1e3:.3f} ms",
                        flush=True,
                    )
        finally:
            stop(process)
        in_process = {name: p50_us(call, row) for name, call in calls.items()}
    onnx_rate = float(np.median(rates["mlp_onnx"]))
    overhead = float(np.median(latency["mlp_onnx"])) - in_process["mlp_onnx"]
    print(f"serval's overhead on ONNX at 1 connection: {overhead:.0f} µs")
    for name in names:
        rate, p50 = float(np.median(rates[name])), float(np.median(latency[name]))
        bound = in_process[name] + overhead
        print(
            f"{name}: {rate:,.0f} rows/s = {rate / onnx_rate:.2f} x ONNX; p50 {p50:.0f} µs, "
            f"in-process {in_process[name]:.0f} µs + overhead = {bound:.0f} µs: "
            f"{p50 / bound:.2f} x"
        )


if __name__ == "__main__":
    main()
