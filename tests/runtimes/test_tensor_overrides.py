"""model.yaml's inputs/outputs corrections: the column names of a [-1, n] input."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from serval.core.errors import ModelConfigError
from serval.core.specs.tensors import TensorOverride
from serval.core.tensors.datatypes import DataType
from serval.core.types import TensorSpec
from serval.runtimes.options import apply_overrides

INPUT = TensorSpec("input", DataType.FP32, (-1, 3))


def test_columns_are_carried_onto_the_input() -> None:
    override = TensorOverride(name="input", columns=("a", "b", "c"))
    (spec,) = apply_overrides([INPUT], [override], "inputs", "model.yaml")
    assert spec.columns == ("a", "b", "c")
    assert (spec.datatype, spec.shape) == (DataType.FP32, (-1, 3))


def test_columns_may_fix_a_variable_width() -> None:
    variable = TensorSpec("input", DataType.FP32, (-1, -1))
    (spec,) = apply_overrides(
        [variable], [TensorOverride(name="input", columns=("a", "b"))], "inputs", "model.yaml"
    )
    assert spec.columns == ("a", "b")


def test_columns_must_match_the_width_and_a_two_dimensional_input() -> None:
    with pytest.raises(ModelConfigError, match=r"inputs: input: 2 columns for an input of 3"):
        apply_overrides(
            [INPUT], [TensorOverride(name="input", columns=("a", "b"))], "inputs", "model.yaml"
        )
    flat = TensorSpec("input", DataType.FP32, (-1,))
    with pytest.raises(ModelConfigError, match=r"columns name the columns of a \[-1, n\] input"):
        apply_overrides([flat], [TensorOverride(name="input", columns=("a",))], "inputs", "y")
    with pytest.raises(ModelConfigError, match="declared on inputs, not outputs"):
        apply_overrides(
            [INPUT], [TensorOverride(name="input", columns=("a", "b", "c"))], "outputs", "y"
        )


def test_columns_are_distinct_non_empty_names() -> None:
    with pytest.raises(ValidationError, match="named more than once: a"):
        TensorOverride(name="input", columns=("a", "b", "a"))
    with pytest.raises(ValidationError, match="non-empty"):
        TensorOverride(name="input", columns=("a", ""))
