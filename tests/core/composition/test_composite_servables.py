"""Pipelines, cascades and ensembles on the core Harness: each step through its model's own
servable, results in request order, errors naming the step, availability following the
models they call."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from serval.core.composition.cascade import CascadeCounts
from serval.core.composition.composite import CompositeServables
from serval.core.composition.ensemble import EnsembleServable
from serval.core.composition.wrapper import WrappingServable
from serval.core.dataplane import DataPlane, ServerMetadata
from serval.core.errors import (
    DeadlineExceededError,
    InvalidInputError,
    ModelExecutionError,
    ModelLoadError,
    ModelNotReadyError,
)
from serval.core.events import EventBus
from serval.core.lifecycle.options import ControlMode
from serval.core.lifecycle.states import ServableState
from serval.core.load_override import LoadOverride
from serval.core.model_spec import ModelSpec
from serval.core.tensors.datatypes import DataType
from serval.core.types import (
    InferenceRequest,
    InferenceResponse,
    RequestedOutput,
    ServableMetadata,
    Tensor,
    TensorSpec,
)
from tests.core.fakes import Harness, wait_until

Arrays = dict[str, np.ndarray[Any, Any]]


@dataclass
class FnPredictor:
    """A model computing ``fn(inputs) -> outputs``; records the rows of each call."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    fn: Callable[[Arrays], Arrays]
    calls: list[int] = field(default_factory=list)
    delay_s: float = 0.0

    @property
    def metadata(self) -> ServableMetadata:
        return ServableMetadata("fake", self.inputs, self.outputs)

    def predict(self, request: InferenceRequest) -> InferenceResponse:
        self.calls.append(request.rows)
        if self.delay_s:
            time.sleep(self.delay_s)
        values = {t.name: t.data for t in request.inputs}
        answered = self.fn(values)
        wanted = [o.name for o in request.outputs] if request.outputs else list(answered)
        return InferenceResponse(
            request.model_name,
            [
                Tensor(name, DataType.from_numpy(answered[name].dtype), answered[name])
                for name in wanted
            ],
        )

    def close(self) -> None:
        pass


def fp32(name: str, *shape: int) -> TensorSpec:
    return TensorSpec(name, DataType.FP32, (-1, *shape))


def scaler(k: float) -> FnPredictor:
    return FnPredictor((fp32("x", 2),), (fp32("y", 2),), lambda v: {"y": v["x"] * np.float32(k)})


def adder() -> FnPredictor:
    return FnPredictor(
        (fp32("a", 2), fp32("b", 2)), (fp32("s", 2),), lambda v: {"s": v["a"] + v["b"]}
    )


def classifier(shift: float) -> FnPredictor:
    """x [-1, 2] -> probabilities [-1, 2] (softmax of x + shift), label INT64 [-1]."""

    def fn(v: Arrays) -> Arrays:
        z = v["x"] + np.float32(shift)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        p = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
        return {"probabilities": p, "label": p.argmax(axis=1).astype(np.int64)}

    outputs = (fp32("probabilities", 2), TensorSpec("label", DataType.INT64, (-1,)))
    return FnPredictor((fp32("x", 2),), outputs, fn)


def harness(
    models: dict[str, FnPredictor],
    composites: dict[str, dict[str, object]],
    composite: CompositeServables | None = None,
) -> Harness:
    h = Harness(composite=composite)
    for name, predictor in models.items():
        h.source.add_version(name, 1)
        h.loaders.predictors[(name, 1)] = predictor  # type: ignore[assignment]
    for name, spec in composites.items():
        h.source.add_version(name, 1)
        h.source.set_spec(name, spec)
    return h


def x_request(
    name: str, x: np.ndarray[Any, Any], outputs: list[str] | None = None
) -> InferenceRequest:
    wanted = None if outputs is None else [RequestedOutput(o) for o in outputs]
    return InferenceRequest(name, [Tensor("x", DataType.FP32, x)], outputs=wanted)


def plane(h: Harness) -> DataPlane:
    return DataPlane(h.manager, EventBus(), ServerMetadata("serval", "0", ()))


DAG = {
    "pipeline": {
        "steps": [
            {"name": "double", "model": "two", "inputs": {"x": "inputs.x"}},
            {"name": "triple", "model": "three", "inputs": {"x": "inputs.x"}},
            {"name": "sum", "model": "add", "inputs": {"a": "double.y", "b": "triple.y"}},
        ],
        "outputs": {"total": "sum.s", "doubled": "double.y"},
    }
}


def test_a_pipeline_runs_its_dag_and_only_the_steps_the_outputs_need() -> None:
    models = {"two": scaler(2), "three": scaler(3), "add": adder()}
    h = harness(models, {"p": DAG})

    async def test(h: Harness) -> None:
        await h.manager.start()
        dp = plane(h)
        meta = dp.model_metadata("p")
        assert meta.platform == "serval_pipeline"
        assert [(s.name, s.shape) for s in meta.inputs] == [("x", (-1, 2))]
        assert [s.name for s in meta.outputs] == ["total", "doubled"]
        x = np.arange(6, dtype=np.float32).reshape(3, 2)
        response = await dp.infer(x_request("p", x))
        outputs = {t.name: t.data for t in response.outputs}
        np.testing.assert_allclose(outputs["total"], 5 * x)
        np.testing.assert_allclose(outputs["doubled"], 2 * x)
        assert response.model_name == "p" and response.model_version == "1"
        # Asking for `doubled` alone runs only the step that makes it.
        response = await dp.infer(x_request("p", x, ["doubled"]))
        assert [t.name for t in response.outputs] == ["doubled"]
        assert (len(models["two"].calls), len(models["three"].calls)) == (2, 1)
        # Each step's statistics count its calls, as a request would.
        (two,) = dp.statistics("two")
        assert two.success.count == 2 and two.inference_count == 6
        (p,) = dp.statistics("p")
        assert p.success.count == 2

    h.run(test)


def test_independent_steps_run_concurrently() -> None:
    models = {"two": scaler(2), "three": scaler(3), "add": adder()}
    # Each of the two independent steps waits until the other has started: run one after
    # the other, the first would wait in vain.
    started = {"two": threading.Event(), "three": threading.Event()}
    met: list[bool] = []

    def meeting(name: str, other: str, k: float) -> Callable[[Arrays], Arrays]:
        def fn(v: Arrays) -> Arrays:
            started[name].set()
            met.append(started[other].wait(5))
            return {"y": v["x"] * np.float32(k)}

        return fn

    models["two"].fn = meeting("two", "three", 2)
    models["three"].fn = meeting("three", "two", 3)
    h = harness(models, {"p": DAG})

    async def test(h: Harness) -> None:
        await h.manager.start()
        x = np.ones((1, 2), np.float32)
        response = await plane(h).infer(x_request("p", x, ["total"]))
        np.testing.assert_allclose(response.outputs[0].data, 5 * x)
        assert met == [True, True]

    h.run(test)


def test_a_pipeline_says_which_step_failed() -> None:
    models = {"two": scaler(2), "three": scaler(3), "add": adder()}
    h = harness(models, {"p": DAG})

    async def test(h: Harness) -> None:
        await h.manager.start()
        dp = plane(h)
        with pytest.raises(InvalidInputError, match="input 'x': expected shape"):
            await dp.infer(x_request("p", np.ones((1, 3), np.float32)))

        def crash(v: Arrays) -> Arrays:
            raise ZeroDivisionError("boom")

        models["add"].fn = crash
        with pytest.raises(
            ModelExecutionError,
            match=r"pipeline 'p' step 'sum' \(model 'add'\) failed: ZeroDivisionError: boom",
        ):
            await dp.infer(x_request("p", np.ones((1, 2), np.float32)))
        (add,) = dp.statistics("add")
        assert add.fail.count == 1

    h.run(test)


def test_a_step_past_the_deadline_is_a_deadline_error() -> None:
    models = {"two": scaler(2), "three": scaler(3), "add": adder()}
    models["three"].delay_s = 0.5
    h = harness(models, {"p": DAG})

    async def test(h: Harness) -> None:
        await h.manager.start()
        request = x_request("p", np.ones((1, 2), np.float32))
        request.deadline = time.monotonic() + 0.1
        with pytest.raises(DeadlineExceededError):
            await plane(h).infer(request)

    h.run(test)


def test_a_mismatch_between_steps_is_a_load_error_naming_step_and_tensor() -> None:
    models = {"two": scaler(2), "wide": FnPredictor((fp32("x", 3),), (fp32("y", 3),), dict)}
    spec = {
        "pipeline": {
            "steps": [
                {"name": "a", "model": "two", "inputs": {"x": "inputs.x"}},
                {"name": "b", "model": "wide", "inputs": {"x": "a.y"}},
            ],
            "outputs": {"out": "b.y"},
        }
    }
    h = harness(models, {"p": spec})

    async def test(h: Harness) -> None:
        await h.manager.start()
        assert h.serving("p") == []
        rows = [row for row in await h.manager.index() if row.name == "p"]
        assert rows[0].state is ServableState.END
        assert (
            "pipeline step 'b' (model 'wide'): input 'x' (FP32 [-1, 3]) does not match "
            "step 'a' output 'y' (FP32 [-1, 2])" in rows[0].reason
        )

    h.run(test)


def test_a_pipeline_is_unavailable_while_a_step_is_gone_and_follows_new_versions() -> None:
    models = {"two": scaler(2), "three": scaler(3), "add": adder()}
    h = harness(models, {"p": DAG})

    async def test(h: Harness) -> None:
        await h.manager.start()
        dp = plane(h)
        x = np.ones((1, 2), np.float32)
        await h.manager.unload("three")
        assert not dp.model_ready("p")
        with pytest.raises(
            ModelNotReadyError, match=r"pipeline 'p' step 'triple' \(model 'three'\) is not"
        ):
            await dp.infer(x_request("p", x))
        reason = h.manager.readiness()[1]
        assert "waiting for model 'three' (step 'triple')" in reason
        await h.manager.load("three")
        assert dp.model_ready("p")
        # A new version of a step serves the pipeline's next request.
        h.loaders.predictors[("three", 2)] = scaler(30)  # type: ignore[assignment]
        h.source.add_version("three", 2)
        await h.sync()
        assert h.serving("three") == [2]
        response = await dp.infer(x_request("p", x, ["total"]))
        np.testing.assert_allclose(response.outputs[0].data, 32 * x)
        # A version that takes other shapes: the step's request is checked against it.
        h.loaders.predictors[("three", 3)] = FnPredictor(  # type: ignore[assignment]
            (fp32("x", 3),), (fp32("y", 3),), lambda v: {"y": v["x"]}
        )
        h.source.add_version("three", 3)
        await h.sync()
        with pytest.raises(
            InvalidInputError, match=r"step 'triple' \(model 'three'\): input 'x': expected shape"
        ):
            await dp.infer(x_request("p", x, ["total"]))

    h.run(test)


CASCADE = {
    "cascade": [
        {"model": "small", "accept": {"output": "probabilities", "min_confidence": 0.9}},
        {"model": "large"},
    ]
}


def test_a_cascade_answers_rows_per_stage_in_request_order() -> None:
    models = {"small": classifier(0.0), "large": classifier(1.0)}
    counts = CascadeCounts()
    h = harness(models, {"c": CASCADE}, CompositeServables(counts))

    async def test(h: Harness) -> None:
        await h.manager.start()
        dp = plane(h)
        meta = dp.model_metadata("c")
        assert [s.name for s in meta.outputs] == ["probabilities", "label", "served_by"]
        # Confident rows (a large gap between the two scores) stay with `small`.
        x = np.array([[0, 5], [0, 0.5], [4, 0], [0.2, 0], [0, 9]], np.float32)
        response = await dp.infer(x_request("c", x))
        out = {t.name: t.data for t in response.outputs}
        small = classifier(0.0).fn({"x": x})
        large = classifier(1.0).fn({"x": x})
        accepted = small["probabilities"].max(axis=1) >= 0.9
        expected = np.where(accepted[:, None], small["probabilities"], large["probabilities"])
        np.testing.assert_allclose(out["probabilities"], expected)
        assert list(out["served_by"]) == [b"small" if a else b"large" for a in accepted]
        assert models["large"].calls == [int((~accepted).sum())]  # the rest, as one batch
        assert counts.rows == {("c", "small"): 3, ("c", "large"): 2}
        # Only served_by asked: the stages still run, the answer has only it.
        response = await dp.infer(x_request("c", x, ["served_by"]))
        assert [t.name for t in response.outputs] == ["served_by"]

    h.run(test)


def test_cascade_stages_must_answer_the_same_outputs() -> None:
    models = {"small": classifier(0.0), "large": scaler(2)}
    h = harness(models, {"c": CASCADE})

    async def test(h: Harness) -> None:
        await h.manager.start()
        (row,) = [row for row in await h.manager.index() if row.name == "c"]
        assert "cascade stage 1 (model 'large'): its outputs (y) differ from stage 0" in row.reason

    h.run(test)


def test_an_ensemble_means_and_votes() -> None:
    models = {"a": classifier(0.0), "b": classifier(1.0), "c": classifier(-1.0)}
    models["c"].fn = lambda v: {
        "probabilities": np.full((len(v["x"]), 2), 0.5, np.float32),
        "label": (v["x"][:, 0] > 100).astype(np.int64),
    }
    ensembles = {
        "mean": {
            "ensemble": {"models": ["a", "b", "c"], "combine": "mean", "output": "probabilities"}
        },
        "vote": {"ensemble": {"models": ["a", "b", "c"], "combine": "vote", "output": "label"}},
        "tie": {"ensemble": {"models": ["b", "c"], "combine": "vote", "output": "label"}},
    }
    h = harness(models, ensembles)

    async def test(h: Harness) -> None:
        await h.manager.start()
        dp = plane(h)
        x = np.array([[0, 3], [3, 0], [0, 0.1]], np.float32)
        answers = [m.fn({"x": x}) for m in models.values()]
        response = await dp.infer(x_request("mean", x))
        out = {t.name: t.data for t in response.outputs}
        mean = np.mean([a["probabilities"] for a in answers], axis=0)
        np.testing.assert_allclose(out["probabilities"], mean, rtol=1e-6)
        np.testing.assert_array_equal(out["label"], answers[0]["label"])  # the first member's
        response = await dp.infer(x_request("vote", x, ["label"]))
        labels = np.array([a["label"] for a in answers])
        majority = [np.bincount(labels[:, row]).argmax() for row in range(3)]
        np.testing.assert_array_equal(response.outputs[0].data, majority)
        response = await dp.infer(x_request("tie", x, ["label"]))  # 1 to 1: the first, b
        np.testing.assert_array_equal(response.outputs[0].data, answers[1]["label"])
        # Not asking for the combined output runs the first member only.
        calls = len(models["c"].calls)
        await dp.infer(x_request("vote", x, ["probabilities"]))
        assert len(models["c"].calls) == calls

    h.run(test)


def test_a_composite_spec_refuses_runtime_fields_and_names_problems() -> None:
    with pytest.raises(Exception, match="max_batch_size: not allowed with ensemble"):
        ModelSpec.parse(
            {
                "ensemble": {"models": ["a", "b"], "combine": "mean", "output": "p"},
                "max_batch_size": 8,
            },
            source="m.yaml",
        )
    with pytest.raises(Exception, match="a cycle: a -> b -> a"):
        ModelSpec.parse(
            {
                "pipeline": {
                    "steps": [
                        {"name": "a", "model": "m", "inputs": {"x": "b.y"}},
                        {"name": "b", "model": "m", "inputs": {"x": "a.y"}},
                    ],
                    "outputs": {"y": "b.y"},
                }
            },
            source="m.yaml",
        )


def test_concurrent_requests_through_a_gated_step_get_their_own_rows() -> None:
    gate = threading.Event()
    models = {"two": scaler(2), "three": scaler(3), "add": adder()}
    inner = models["add"].fn

    def gated(v: Arrays) -> Arrays:
        gate.wait(5)
        return inner(v)

    models["add"].fn = gated
    h = harness(models, {"p": DAG})

    async def test(h: Harness) -> None:
        await h.manager.start()
        dp = plane(h)
        xs = [np.full((1 + i % 3, 2), i, np.float32) for i in range(8)]
        calls = [asyncio.create_task(dp.infer(x_request("p", x, ["total"]))) for x in xs]
        await wait_until(lambda: bool(models["add"].calls))  # requests pile up behind it
        gate.set()
        for x, response in zip(xs, await asyncio.gather(*calls), strict=True):
            np.testing.assert_allclose(response.outputs[0].data, 5 * x)

    h.run(test)


def test_a_step_gets_the_request_s_schedule_and_its_client_errors_stay_client_errors() -> None:
    seen: list[InferenceRequest] = []

    @dataclass
    class Picky(FnPredictor):
        def predict(self, request: InferenceRequest) -> InferenceResponse:
            seen.append(request)
            if request.inputs[0].data.sum() < 0:
                raise InvalidInputError("negative values are not allowed")
            return super().predict(request)

    models = {"two": scaler(2), "picky": Picky((fp32("x", 2),), (fp32("y", 2),), dict)}
    models["picky"].fn = lambda v: {"y": v["x"]}
    spec = {
        "pipeline": {
            "steps": [
                {"name": "a", "model": "two", "inputs": {"x": "inputs.x"}},
                {"name": "b", "model": "picky:1", "inputs": {"x": "a.y"}},
            ],
            "outputs": {"out": "b.y"},
        }
    }
    h = harness(models, {"p": spec})

    async def test(h: Harness) -> None:
        await h.manager.start()
        request = x_request("p", np.ones((1, 2), np.float32))
        request.id, request.priority, request.deadline = "r-7", 2, time.monotonic() + 30
        await plane(h).infer(request)
        (step,) = seen
        assert (step.id, step.priority, step.deadline) == ("r-7", 2, request.deadline)
        assert step.model_name == "picky" and step.model_version == "1"
        with pytest.raises(
            InvalidInputError,
            match=r"pipeline 'p' step 'b' \(model 'picky'\): negative values are not allowed",
        ):
            await plane(h).infer(x_request("p", -np.ones((1, 2), np.float32)))

    h.run(test)


def test_the_layer_plan_wraps_a_composite_as_it_wraps_a_plain_model() -> None:
    class Outer(WrappingServable):
        __slots__ = ()

    h = Harness(lambda spec, provider, id: [lambda s, _: Outer(s)])
    h.source.add_version("two", 1)
    h.loaders.predictors[("two", 1)] = scaler(2)  # type: ignore[assignment]
    h.source.add_version("e", 1)
    h.source.set_spec(
        "e", {"ensemble": {"models": ["two", "two:1"], "combine": "mean", "output": "y"}}
    )

    async def test(h: Harness) -> None:
        await h.manager.start()
        async with h.manager.lease("e") as handle:
            assert isinstance(handle.servable, Outer)
            assert isinstance(handle.servable.inner, EnsembleServable)
        async with h.manager.lease("two") as handle:
            assert isinstance(handle.servable, Outer)

    h.run(test)


def test_a_load_override_keeps_the_composite_section_and_cannot_set_one() -> None:
    file_spec = ModelSpec.parse(
        {"ensemble": {"models": ["a", "b"], "combine": "mean", "output": "y"}}, source="m.yaml"
    )
    override = LoadOverride.parse({"parameters": {"owner": "me"}}, "e")
    merged = override.applied_to(file_spec)
    assert merged.composite == "ensemble" and merged.parameters == {"owner": "me"}
    with pytest.raises(InvalidInputError, match="pipeline cannot be set by a load request"):
        LoadOverride.parse({"pipeline": {}}, "e")


def test_loading_a_composite_through_the_api_loads_the_models_it_calls() -> None:
    models = {"two": scaler(2), "three": scaler(3), "add": adder()}
    h = Harness(control_mode=ControlMode.EXPLICIT)
    for name, predictor in models.items():
        h.source.add_version(name, 1)
        h.loaders.predictors[(name, 1)] = predictor  # type: ignore[assignment]
    h.source.add_version("p", 1)
    h.source.set_spec("p", DAG)
    h.source.add_version("ghost", 1)
    h.source.set_spec(
        "ghost", {"ensemble": {"models": ["two", "nowhere"], "combine": "mean", "output": "y"}}
    )

    async def test(h: Harness) -> None:
        await h.manager.start()
        assert h.serving("p") == [] and h.serving("two") == []
        await h.manager.load("p")
        assert h.serving("p") == [1]
        assert [h.serving(name) for name in models] == [[1], [1], [1]]
        with pytest.raises(ModelLoadError, match=r"waiting for model 'nowhere' \(member 1\)"):
            await h.manager.load("ghost")

    h.run(test)
