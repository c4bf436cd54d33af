"""A ``model.yaml`` override sent with a load request (Triton's ``config`` load parameter).

The load API may change how a model is served (batching, instances, warm-up, version policy,
labels, inputs and outputs, parameters) but never what the operator decides in the repository:
those fields (``OPERATOR_ONLY_FIELDS``) are refused in an override and always taken from the
model's ``model.yaml`` (or their safe defaults when it has none). Otherwise an anonymous request
could, say, turn on ``trust_pickle`` and make the server unpickle a file it refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from serval.core.errors import InvalidInputError
from serval.core.model_spec import ModelSpec

# Every field a load request may not set, and why it belongs to the operator. A runtime's
# options as a whole: trust (trust_pickle, trusted_types), isolation and workers, threads,
# execution providers, timeouts and import paths all decide what code runs and with what
# resources; an allow-list by section also covers options that runtimes add later.
OPERATOR_ONLY_FIELDS: Mapping[str, str] = {
    "runtime": "it chooses which code reads the model's files",
    "runtime_options": "they decide what the runtime trusts and how it runs (trust_pickle, "
    "trusted_types, isolation, workers, threads, timeouts)",
}

# A composite model's sections (docs/composition.md) say what the model is, which models it
# calls: an override neither sets nor drops them; they are always model.yaml's.
COMPOSITE_FIELDS = ("pipeline", "cascade", "ensemble")

LOAD_REQUEST = "load request"


@dataclass(frozen=True, slots=True)
class LoadOverride:
    """The parsed override and the top-level fields it set."""

    spec: ModelSpec
    fields: frozenset[str]

    @classmethod
    def parse(cls, config: object, model: str) -> LoadOverride:
        """Validate a load request's ``config``; an operator-only field is a 400 naming it."""
        if not isinstance(config, Mapping):
            raise InvalidInputError("parameters.config must be a JSON object")
        for key, value in config.items():
            if key in OPERATOR_ONLY_FIELDS:
                raise InvalidInputError(
                    f"parameters.config: {_field_name(key, value)} cannot be set by a load "
                    f"request: {OPERATOR_ONLY_FIELDS[key]}; set it in the model's model.yaml"
                )
            if key in COMPOSITE_FIELDS:
                raise InvalidInputError(
                    f"parameters.config: {key} cannot be set by a load request: it decides "
                    f"which models the model calls; set it in the model's model.yaml"
                )
        spec = ModelSpec.parse(config, source=f"{LOAD_REQUEST} for {model!r}: config")
        return cls(spec, frozenset(str(key) for key in config))

    def applied_to(self, file_spec: ModelSpec | None) -> ModelSpec:
        """The spec a load uses: the override's fields, the operator's from ``file_spec``
        (model.yaml; None: there is none, so the safe defaults)."""
        base = file_spec if file_spec is not None else ModelSpec()
        kept = (*OPERATOR_ONLY_FIELDS, *COMPOSITE_FIELDS)
        return self.spec.model_copy(update={name: getattr(base, name) for name in kept})

    def describe_origins(self, spec_file: str | None) -> str:
        """Where each setting comes from, for the log: ``spec_file`` is model.yaml's path, or
        None when the model has none."""
        given = ", ".join(sorted(self.fields)) or "nothing"
        operator = ", ".join(OPERATOR_ONLY_FIELDS)
        from_file = spec_file if spec_file is not None else "their defaults (no model.yaml)"
        return f"{given} from the {LOAD_REQUEST}; {operator} from {from_file}; the rest defaults"


def _field_name(key: str, value: Any) -> str:
    """``runtime_options.trust_pickle`` rather than ``runtime_options`` where it can."""
    if isinstance(value, Mapping) and value:
        return f"{key}.{next(iter(value))}"
    return key
