"""A load request's ``config`` in Triton's form: Triton's model configuration JSON (what
``get_model_config`` returns, which tritonclient's ``load_model(config=...)`` sends back)
translated into model.yaml's fields, so that the control plane sees one form.

A ``config`` is Triton's when it has one of Triton's own keys (``name``, ``platform``,
``backend``, ``input``, ``output``, ``instance_group``) or a ``dynamic_batching`` with Triton's
field names; otherwise it is model.yaml's fields, as before. What is understood:

* ``name`` (must be the model's), ``platform`` and ``backend`` (the runtime still comes from
  the model file, as serval reports it);
* ``max_batch_size``; ``version_policy`` (``latest``, ``all``, ``specific``);
* ``input`` / ``output``: ``name``, ``data_type`` (``TYPE_STRING`` is BYTES) and ``dims``
  (without the batch dimension when ``max_batch_size`` > 0, as Triton's);
* ``instance_group``: the groups' ``count`` summed into ``instances`` (CPU instances only);
* ``dynamic_batching``: ``preferred_batch_size``, ``max_queue_delay_microseconds``,
  ``priority_levels``, ``default_priority_level``, ``default_queue_policy.max_queue_size``;
* ``parameters`` (``{key: {string_value: ...}}``), serval's ``serval.dynamic_batching.*``
  keys going back into ``dynamic_batching``.

Any other field is refused by name (a 400), unless it holds its default value (false, 0, an
empty string, list or object, ``FORMAT_NONE``), as Triton's own JSON prints every field.
64-bit integers may come as strings, as protobuf's JSON printer writes them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from serval.core.control import CONFIG_PARAMETER, load_config
from serval.core.errors import InvalidInputError
from serval.protocols.oip.triton_config import PARAM_BATCHING_MODE, PARAM_LATENCY_SLO_MS

TRITON_KEYS = frozenset({"name", "platform", "backend", "input", "output", "instance_group"})
_TRITON_BATCHING_KEYS = frozenset(
    {"preferred_batch_size", "max_queue_delay_microseconds", "default_queue_policy"}
)
_DEFAULTS: tuple[Any, ...] = (None, False, 0, "", "FORMAT_NONE", "KIND_AUTO")
_CPU_KINDS = ("KIND_CPU", "KIND_AUTO", "")
_WHERE = "load parameter 'config' (Triton's model configuration)"


def translate_load_parameters(name: str, parameters: Mapping[str, Any]) -> Mapping[str, Any]:
    """``parameters`` with a Triton ``config`` replaced by model.yaml's fields; unchanged
    when there is no config or it is model.yaml's already."""
    config = load_config(parameters)
    if config is None or not is_triton_config(config):
        return parameters
    translated = dict(parameters)
    translated[CONFIG_PARAMETER] = json.dumps(from_triton_config(name, config))
    return translated


def is_triton_config(config: Mapping[str, Any]) -> bool:
    """Whether ``config`` is Triton's model configuration rather than model.yaml's fields."""
    if any(key in TRITON_KEYS for key in config):
        return True
    batching = config.get("dynamic_batching")
    return isinstance(batching, Mapping) and any(k in _TRITON_BATCHING_KEYS for k in batching)


def from_triton_config(name: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """model.yaml's fields for Triton's ``config``; raises ``InvalidInputError`` naming the
    first field serval cannot honour."""
    spec: dict[str, Any] = {}
    config = dict(config)
    given_name = config.pop("name", "")
    if given_name and given_name != name:
        raise InvalidInputError(f"{_WHERE}: name {given_name!r} is not the model {name!r}")
    config.pop("platform", None)  # the runtime comes from the model file
    config.pop("backend", None)
    max_batch = _int(config.pop("max_batch_size", 0), "max_batch_size")
    if max_batch:
        spec["max_batch_size"] = max_batch
    policy = config.pop("version_policy", None)
    if policy:
        spec["version_policy"] = _version_policy(policy)
    batched = max_batch > 0
    for key, target in (("input", "inputs"), ("output", "outputs")):
        tensors = config.pop(key, None) or []
        if tensors:
            spec[target] = [_tensor(t, f"{key}[{i}]", batched) for i, t in enumerate(tensors)]
    groups = config.pop("instance_group", None) or []
    if groups:
        spec["instances"] = sum(_instances(g, f"instance_group[{i}]") for i, g in enumerate(groups))
    parameters = _parameters(config.pop("parameters", None) or {})
    batching = config.pop("dynamic_batching", None)
    if batching is not None:
        spec["dynamic_batching"] = _dynamic_batching(batching, parameters)
    for key in (PARAM_BATCHING_MODE, PARAM_LATENCY_SLO_MS):
        parameters.pop(key, None)  # serval's own, meaningful only with dynamic_batching
    if parameters:
        spec["parameters"] = parameters
    _refuse_rest(config, "")
    return spec


def _tensor(item: Any, where: str, batched: bool) -> dict[str, Any]:
    item = dict(_mapping(item, where))
    name = item.pop("name", "")
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"{_WHERE}: {where}.name must be a non-empty string")
    out: dict[str, Any] = {"name": name}
    data_type = item.pop("data_type", "")
    if data_type and data_type != "TYPE_INVALID":
        text = str(data_type).removeprefix("TYPE_")
        out["datatype"] = "BYTES" if text == "STRING" else text
    dims = [_int(d, f"{where}.dims") for d in item.pop("dims", None) or []]
    if batched:
        dims = [-1, *dims]
    if dims:
        out["shape"] = dims
    _refuse_rest(item, f"{where}.")
    return out


def _instances(item: Any, where: str) -> int:
    item = dict(_mapping(item, where))
    item.pop("name", None)
    kind = item.pop("kind", "")
    if kind not in _CPU_KINDS:
        raise InvalidInputError(
            f"{_WHERE}: {where}.kind {kind!r}: serval runs CPU instances only (KIND_CPU)"
        )
    count = _int(item.pop("count", 0), f"{where}.count") or 1  # Triton's default: 1
    _refuse_rest(item, f"{where}.")
    return count


def _dynamic_batching(item: Any, parameters: dict[str, Any]) -> dict[str, Any]:
    item = dict(_mapping(item, "dynamic_batching"))
    where = "dynamic_batching."
    out: dict[str, Any] = {}
    sizes = item.pop("preferred_batch_size", None) or []
    if sizes:
        out["preferred_batch_sizes"] = [_int(s, f"{where}preferred_batch_size") for s in sizes]
    for key, target in (
        ("max_queue_delay_microseconds", "max_queue_delay_us"),
        ("priority_levels", "priority_levels"),
        ("default_priority_level", "default_priority_level"),
    ):
        value = _int(item.pop(key, 0), where + key)
        if value:
            out[target] = value
    queue = dict(_mapping(item.pop("default_queue_policy", None) or {}, f"{where}queue"))
    max_queue = _int(queue.pop("max_queue_size", 0), f"{where}default_queue_policy.max_queue_size")
    if max_queue:
        out["max_queue_size"] = max_queue
    _refuse_rest(queue, f"{where}default_queue_policy.")
    _refuse_rest(item, where)
    mode = parameters.get(PARAM_BATCHING_MODE)
    if mode:
        out["mode"] = mode
    slo = parameters.get(PARAM_LATENCY_SLO_MS)
    if slo:
        out["latency_slo_ms"] = slo
    return out


def _version_policy(policy: Any) -> dict[str, Any]:
    policy = _mapping(policy, "version_policy")
    if "specific" in policy:
        specific = _mapping(policy["specific"], "version_policy.specific")
        versions = specific.get("versions") or []
        return {"specific": [_int(v, "version_policy.specific.versions") for v in versions]}
    if "latest" in policy:
        latest = _mapping(policy["latest"], "version_policy.latest")
        return {"latest": _int(latest.get("num_versions", 1), "num_versions") or 1}
    if "all" in policy:
        return {"all": {}}
    raise InvalidInputError(f"{_WHERE}: version_policy must be latest, all or specific")


def _parameters(item: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in _mapping(item, "parameters").items():
        entry = _mapping(value, f"parameters.{key}")
        text = entry.get("string_value", "")
        if not isinstance(text, str):
            raise InvalidInputError(f"{_WHERE}: parameters.{key}.string_value must be a string")
        out[str(key)] = text
    return out


def _refuse_rest(item: Mapping[str, Any], prefix: str) -> None:
    """Refuse, by name, the first field left that asks for something serval does not do."""
    for key, value in item.items():
        if value in _DEFAULTS or (isinstance(value, list | dict) and not value):
            continue
        raise InvalidInputError(
            f"{_WHERE}: {prefix}{key} is not supported by serval; remove it (serval "
            f"understands max_batch_size, version_policy, input, output, instance_group count, "
            f"dynamic_batching and parameters)"
        )


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"{_WHERE}: {where} must be an object")
    return value


def _int(value: Any, where: str) -> int:
    """An integer, also as protobuf's JSON printer writes 64-bit ones (strings)."""
    if isinstance(value, bool):
        raise InvalidInputError(f"{_WHERE}: {where} must be an integer, received {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise InvalidInputError(f"{_WHERE}: {where} must be an integer, received {value!r}")
