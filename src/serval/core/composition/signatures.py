"""The inputs and outputs of a composite model, derived at load from the metadata of the
models it calls, and the checks that they fit together: a mismatch is a load error naming the
step and the tensor."""

from __future__ import annotations

from collections.abc import Sequence

from serval.core.errors import ModelLoadError
from serval.core.tensors.datatypes import DataType
from serval.core.types import TensorSpec


def describe(spec: TensorSpec) -> str:
    return f"{spec.datatype} {list(spec.shape)}"


def shapes_fit(a: Sequence[int], b: Sequence[int]) -> bool:
    """Whether a tensor of shape ``a`` may be one of shape ``b``: the same rank, and each
    dimension equal or variable (-1) on either side."""
    if len(a) != len(b):
        return False
    return all(-1 in (x, y) or x == y for x, y in zip(a, b, strict=True))


def tensors_fit(produced: TensorSpec, consumed: TensorSpec) -> bool:
    return produced.datatype is consumed.datatype and shapes_fit(produced.shape, consumed.shape)


def narrower(a: TensorSpec, b: TensorSpec) -> tuple[int, ...]:
    """The shape that both ``a`` and ``b`` accept (they fit): each dimension fixed if either
    fixes it."""
    return tuple(x if x != -1 else y for x, y in zip(a.shape, b.shape, strict=True))


def same_inputs(
    first: tuple[TensorSpec, ...], other: tuple[TensorSpec, ...], where: str, first_name: str
) -> tuple[TensorSpec, ...]:
    """Check that ``other`` (the inputs of the model at ``where``) takes what ``first`` takes
    (the inputs of ``first_name``): the same names, fitting datatypes and shapes. Returns the
    inputs both accept."""
    names = [spec.name for spec in first]
    if sorted(names) != sorted(spec.name for spec in other):
        raise ModelLoadError(
            f"{where}: its inputs ({', '.join(spec.name for spec in other)}) differ from "
            f"{first_name}'s ({', '.join(names)}); every one gets the same request"
        )
    by_name = {spec.name: spec for spec in other}
    joined = []
    for spec in first:
        theirs = by_name[spec.name]
        if not tensors_fit(spec, theirs):
            raise ModelLoadError(
                f"{where}: input {spec.name!r} is {describe(theirs)}, {first_name}'s is "
                f"{describe(spec)}"
            )
        joined.append(TensorSpec(spec.name, spec.datatype, narrower(spec, theirs)))
    return tuple(joined)


def same_outputs(
    first: tuple[TensorSpec, ...], other: tuple[TensorSpec, ...], where: str, first_name: str
) -> None:
    """Check that ``other`` (the outputs of the model at ``where``) has the names and
    datatypes of ``first``."""
    mine = {spec.name: spec.datatype for spec in first}
    theirs = {spec.name: spec.datatype for spec in other}
    if sorted(mine) != sorted(theirs):
        raise ModelLoadError(
            f"{where}: its outputs ({', '.join(sorted(theirs))}) differ from {first_name}'s "
            f"({', '.join(sorted(mine))})"
        )
    for name, datatype in mine.items():
        if theirs[name] is not datatype:
            raise ModelLoadError(
                f"{where}: output {name!r} is {theirs[name]}, {first_name}'s is {datatype}"
            )


def output_of(outputs: tuple[TensorSpec, ...], name: str, where: str) -> TensorSpec:
    for spec in outputs:
        if spec.name == name:
            return spec
    known = ", ".join(spec.name for spec in outputs)
    raise ModelLoadError(f"{where}: the model has no output {name!r} (outputs: {known})")


NUMERIC = frozenset(DataType) - {DataType.BYTES, DataType.BOOL}
