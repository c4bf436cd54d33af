"""What composition costs and what a cascade saves, on one serval server, in one run.

(a) A two-step pipeline of the ``tiny`` reference model with itself (two steps on the pipeline's
    input, both outputs returned: two model calls per request) against one ``tiny``, one-row
    V2 JSON requests at ``--connections`` connections: requests/s. Target: the pipeline >=
    0.8 x one ``tiny``. A one-step pipeline (one model call, as ``tiny`` makes) shows what
    the composition itself costs.
(b) A cascade whose first stage (a cheap 512 -> 16 linear model) accepts about 90 % of rows
    and sends the rest to the ``mlp`` reference model, against ``mlp`` alone: requests of
    ``--rows`` rows (binary tensors), in rows/s. Target: the cascade >= 3 x ``mlp``.

The models of each comparison are driven in turn by wrk (bench/load.py), rotating which goes
first each round; the report is the median of the rounds. The cascade's threshold is the 10th
percentile of the first stage's top score over the request's rows, computed here, so that 90 %
are accepted.

Usage: python bench/composition.py [--connections 64] [--rows 128] [--rounds 3] [--duration 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from bench import load, servers  # noqa: E402
from bench.models import MODELS, model_yaml, single_row, write_repository  # noqa: E402

ONE_STEP = """pipeline:
  steps:
    - {name: only, model: tiny, inputs: {x: inputs.x}}
  outputs: {y: only.y}
"""
PIPELINE = """pipeline:
  steps:
    - {name: first, model: tiny, inputs: {x: inputs.x}}
    - {name: second, model: tiny, inputs: {x: inputs.x}}
  outputs: {y: first.y, y2: second.y}
"""


def cheap_stage() -> onnx.ModelProto:
    """FP32 x [-1, 512] -> y [-1, 16] = x @ W: the cascade's first stage, with mlp's
    signature and a fraction of its cost."""
    rng = np.random.default_rng(11)
    weight = (rng.standard_normal((512, 16)) / np.sqrt(512)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "cheap",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 512])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 16])],
        [numpy_helper.from_array(weight, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def write(root: Path, rows: int) -> tuple[Path, np.ndarray]:
    """The repository (tiny, mlp, cheap, the pipeline, the cascade) and the cascade's rows."""
    repository = write_repository(root / "repository", ["tiny", "mlp"], 1, 1024)
    cheap = cheap_stage()
    (repository / "cheap" / "1").mkdir(parents=True)
    onnx.save(cheap, repository / "cheap" / "1" / "model.onnx")
    (repository / "cheap" / "model.yaml").write_text(model_yaml(MODELS["mlp"], 1, 1024))
    for name, text in (("tiny1", ONE_STEP), ("tiny2", PIPELINE)):
        (repository / name).mkdir()
        (repository / name / "model.yaml").write_text(text)
    x = np.random.default_rng(5).standard_normal((rows, 512)).astype(np.float32)
    weight = numpy_helper.to_array(cheap.graph.initializer[0])
    threshold = float(np.percentile((x @ weight).max(axis=1), 10))
    (repository / "cascade").mkdir()
    (repository / "cascade" / "model.yaml").write_text(
        "cascade:\n"
        f"  - {{model: cheap, accept: {{output: y, min_value: {threshold!r}}}}}\n"
        "  - {model: mlp}\n"
    )
    return repository, x


def race(
    url: str,
    contenders: dict[str, tuple[Path, int]],
    connections: int,
    rounds: int,
    seconds: float,
) -> dict[str, float]:
    """Requests/s of each model of ``contenders`` (model -> body), median over ``rounds``;
    the order is rotated each round."""
    rates: dict[str, list[float]] = {model: [] for model in contenders}
    for index in range(rounds):
        names = list(contenders)
        order = names[index % len(names) :] + names[: index % len(names)]
        for model in order:
            result = load.wrk(url, model, contenders[model], connections, seconds)
            if result.errors or result.socket_errors:
                raise RuntimeError(f"{model}: {result.errors} errors, {result.socket_errors}")
            rates[model].append(result.rps)
            print(
                f"  round {index + 1} {model:8} {result.rps:9,.0f} req/s  "
                f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms",
                flush=True,
            )
    return {model: statistics.median(values) for model, values in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rows", type=int, default=128, help="rows per cascade request")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        repository, rows = write(folder, args.rows)
        tiny = load.write_bodies(folder / "bodies", "tiny", single_row("tiny"))["json"]
        many = load.write_bodies(folder / "bodies", "rows", rows)["binary"]
        models = ["tiny", "mlp", "cheap", "tiny1", "tiny2", "cascade"]
        server = servers.serval(repository, models, folder, [])
        server.start()
        try:
            print(f"(a) pipeline of tiny with itself vs tiny, {args.connections} connections")
            a = race(
                server.http_url,
                {"tiny": tiny, "tiny1": tiny, "tiny2": tiny},
                args.connections,
                args.rounds,
                args.duration,
            )
            print(f"(b) cascade (cheap -> mlp) vs mlp, {args.rows} rows per request")
            b = race(
                server.http_url,
                {"mlp": many, "cascade": many},
                args.connections,
                args.rounds,
                args.duration,
            )
        finally:
            server.stop()
    print(
        f"(a) tiny {a['tiny']:,.0f} req/s, two-step pipeline {a['tiny2']:,.0f} req/s: "
        f"{a['tiny2'] / a['tiny']:.2f} x (target >= 0.8 x); one-step pipeline "
        f"{a['tiny1']:,.0f} req/s: {a['tiny1'] / a['tiny']:.2f} x"
    )
    mlp_rows, cascade_rows = b["mlp"] * args.rows, b["cascade"] * args.rows
    print(
        f"(b) mlp {mlp_rows:,.0f} rows/s, cascade {cascade_rows:,.0f} rows/s: "
        f"{cascade_rows / mlp_rows:.2f} x (target >= 3 x)"
    )


if __name__ == "__main__":
    main()
