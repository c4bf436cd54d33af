"""``inputs`` and ``outputs`` of model.yaml: what a model file says about a tensor, declared
or corrected, and which of its values serval watches."""

from __future__ import annotations

from pydantic import Field, field_validator

from serval.core.specs.strict import StrictSection
from serval.core.tensors.datatypes import DataType

# Bounds on the tensor declarations a model.yaml (or a load request's override) may make.
MAX_DIMENSIONS = 16
MAX_DIMENSION = 2**31 - 1
MAX_TENSORS = 1024
MAX_LABELS = 100_000
MAX_COLUMNS = 65536


class TensorOverride(StrictSection):
    """Declares or corrects what the model file says about one input or output."""

    name: str = Field(description="Tensor name as the model file has it.")
    datatype: DataType | None = Field(default=None, description="Open Inference Protocol datatype.")
    shape: tuple[int, ...] | None = Field(
        default=None, description="Full shape, batch dimension included; -1 for variable sizes."
    )
    columns: tuple[str, ...] | None = Field(
        default=None,
        max_length=MAX_COLUMNS,
        description="The column names of a [-1, n] input, in order: a request of MLServer's "
        'PandasCodec (content_type "pd", one input per column) is mapped onto this input by '
        "them (docs/rest.md).",
    )

    # Monitoring (see docs/metrics.md); each one makes serval watch this tensor's values.
    range: tuple[float, float] | None = Field(
        default=None,
        description="[min, max] the values should lie in: values outside are counted (for an "
        "output, a guardrail).",
    )
    monitor: bool = Field(
        default=False,
        description="Count missing (NaN) values and keep running count, mean, min and max.",
    )
    classes: bool = Field(
        default=False,
        description="The values are class labels: count them per class (at most 100 classes; "
        "the rest are counted as 'other').",
    )

    labels: tuple[str, ...] | None = Field(
        default=None,
        max_length=MAX_LABELS,
        description="An output's class labels, by index (the first names class 0): a "
        "requested output's class_count (Triton's classification extension) answers "
        "'score:index:label' strings with them.",
    )

    @field_validator("shape")
    @classmethod
    def _dims_valid(cls, shape: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if shape is None:
            return None
        if any(dim < -1 or dim == 0 for dim in shape):
            raise ValueError("dimensions must be positive or -1 (variable)")
        if len(shape) > MAX_DIMENSIONS or any(dim > MAX_DIMENSION for dim in shape):
            raise ValueError(
                f"at most {MAX_DIMENSIONS} dimensions, each at most {MAX_DIMENSION} (or -1)"
            )
        return shape

    @field_validator("columns")
    @classmethod
    def _columns_named(cls, columns: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if columns is None:
            return None
        if not columns or any(not name for name in columns):
            raise ValueError("columns is a non-empty list of non-empty names")
        repeated = sorted({name for name in columns if columns.count(name) > 1})
        if repeated:
            raise ValueError(f"column(s) named more than once: {', '.join(repeated)}")
        return columns

    @field_validator("range")
    @classmethod
    def _range_ordered(cls, bounds: tuple[float, float] | None) -> tuple[float, float] | None:
        if bounds is not None and not bounds[0] <= bounds[1]:
            raise ValueError("range is [min, max] with min <= max")
        return bounds

    @property
    def monitored(self) -> bool:
        """Whether serval watches this tensor's values."""
        return self.monitor or self.classes or self.range is not None
