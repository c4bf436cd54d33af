"""Triton's model configuration, built from a model's metadata and ``model.yaml``: the one
translation behind REST's ``GET /v2/models/{m}/config`` and gRPC's ``ModelConfig``.

The result is Triton's ``ModelConfig`` in the JSON form Triton's HTTP endpoint answers with:
protobuf field names (``max_batch_size``, ``input``, ``data_type``...), enum values by name
(``TYPE_FP32``, ``KIND_CPU``) and, as Triton does after protobuf's printer, 64-bit integers as
JSON numbers rather than strings. ``google.protobuf.json_format.ParseDict`` reads it back into
the message unchanged, which is how the gRPC adapter builds its answer.

What it reports:

* ``dims`` leave out the batch dimension when ``max_batch_size`` is above 0, as in Triton's
  ``config.pbtxt``; ``BYTES`` is ``TYPE_STRING``.
* ``instance_group``: one group ``<model>_0`` of kind ``KIND_CPU`` with ``count`` = the
  model's ``instances`` (1 by default), for a model with a queue of its own
  (``ModelSpec.scheduled``). A model without one shares the server's inference threads and
  reports no ``instance_group``.
* ``dynamic_batching``: for a model that batches (``max_batch_size`` > 0) or has a
  ``dynamic_batching`` section. ``default_priority_level`` is the level a request without
  priority gets: model.yaml's 0 ("the lowest level") is reported as ``priority_levels``, since
  Triton requires a level in [1, priority_levels] once priorities are on.
* ``parameters``: ``model.yaml``'s ``parameters`` as ``string_value`` (booleans as ``true`` /
  ``false``), plus serval's settings that Triton's schema has no field for, under keys that
  start with ``serval.`` (reserved; they replace a ``model.yaml`` parameter of the same name):
  ``serval.dynamic_batching.mode`` (``fixed`` or ``adaptive``) whenever ``dynamic_batching``
  is reported, and ``serval.dynamic_batching.latency_slo_ms`` in adaptive mode.
"""

from __future__ import annotations

from typing import Any

from serval.core.dataplane import ModelConfigView
from serval.core.model_spec import ModelSpec, VersionPolicySpec
from serval.core.specs.scheduling import DynamicBatchingSpec
from serval.core.tensors.datatypes import DataType
from serval.core.types import TensorSpec

# parameters keys for serval's own settings (see the module docstring and docs/rest.md).
PARAM_BATCHING_MODE = "serval.dynamic_batching.mode"
PARAM_LATENCY_SLO_MS = "serval.dynamic_batching.latency_slo_ms"

INSTANCE_KIND = "KIND_CPU"  # instances are threads of the serving process


def triton_model_config(view: ModelConfigView) -> dict[str, Any]:
    """Triton's ModelConfig for ``view``, as Triton's HTTP ``/config`` renders it."""
    spec, metadata = view.spec, view.metadata
    batched = spec.max_batch_size > 0

    def tensors(specs: tuple[TensorSpec, ...]) -> list[dict[str, Any]]:
        return [
            {
                "name": s.name,
                "data_type": config_datatype(s.datatype),
                "dims": list(s.shape[1:] if batched and s.shape else s.shape),
            }
            for s in specs
        ]

    config: dict[str, Any] = {
        "name": metadata.name,
        "platform": metadata.platform,
        "backend": metadata.platform.split("_")[0],
        "version_policy": _version_policy(spec.version_policy),
        "max_batch_size": spec.max_batch_size,
        "input": tensors(metadata.inputs),
        "output": tensors(metadata.outputs),
    }
    if spec.scheduled:
        config["instance_group"] = [
            {"name": f"{metadata.name}_0", "kind": INSTANCE_KIND, "count": spec.instances or 1}
        ]
    parameters = {key: _string_value(value) for key, value in spec.parameters.items()}
    queue = _batching(spec)
    if queue is not None:
        config["dynamic_batching"] = _dynamic_batching(queue)
        parameters[PARAM_BATCHING_MODE] = _string_value(queue.mode)
        if queue.mode == "adaptive" and queue.latency_slo_ms is not None:
            parameters[PARAM_LATENCY_SLO_MS] = _string_value(queue.latency_slo_ms)
    config["parameters"] = {key: {"string_value": text} for key, text in parameters.items()}
    return config


def config_datatype(datatype: DataType) -> str:
    """Triton's model configuration name of a protocol datatype (BYTES is TYPE_STRING)."""
    return "TYPE_STRING" if datatype is DataType.BYTES else f"TYPE_{datatype.value}"


def _batching(spec: ModelSpec) -> DynamicBatchingSpec | None:
    """The queue settings to report as dynamic_batching, or None when the model has none."""
    if spec.dynamic_batching is not None:
        return spec.dynamic_batching
    return DynamicBatchingSpec() if spec.max_batch_size > 0 else None


def _dynamic_batching(queue: DynamicBatchingSpec) -> dict[str, Any]:
    default_level = queue.default_priority_level
    if queue.priority_levels and not default_level:
        default_level = queue.priority_levels  # 0 means the lowest level
    return {
        "preferred_batch_size": list(queue.preferred_batch_sizes),
        "max_queue_delay_microseconds": queue.max_queue_delay_us,
        "priority_levels": queue.priority_levels,
        "default_priority_level": default_level,
        "default_queue_policy": {"max_queue_size": queue.max_queue_size},
    }


def _version_policy(policy: VersionPolicySpec) -> dict[str, Any]:
    if policy.kind == "latest":
        return {"latest": {"num_versions": policy.num_versions}}
    if policy.kind == "specific":
        return {"specific": {"versions": list(policy.versions)}}
    return {"all": {}}


def _string_value(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
