"""What a ``model.py`` declares: its ``ServingModel`` subclass, inputs, input format and
signatures, checked with errors that tell the model's author what to fix."""

from __future__ import annotations

import importlib.util
import sys
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from serval.core.errors import ModelLoadError, ServalError
from serval.core.tensors.datatypes import DataType
from serval.core.types import TensorSpec
from serval.runtimes.python.model import (
    SIGNATURE_ATTRIBUTE,
    ServingModel,
    SignatureInfo,
    TensorInfo,
)

DEFAULT_SIGNATURE = "predict"
MODEL_FILE = "model.py"
_FORMATS = ("numpy", "strings", "pandas")


@dataclass(frozen=True, slots=True)
class Signature:
    name: str
    method: str  # the model's method that implements it
    outputs: tuple[TensorSpec, ...]


@dataclass(frozen=True, slots=True)
class Declaration:
    model_class: type[ServingModel]
    input_format: str
    inputs: tuple[TensorSpec, ...]
    signatures: dict[str, Signature]  # the default first

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        """Every signature's outputs, each once."""
        return _union_outputs(self.signatures.values())


def read_declaration(folder: Path, module_name: str) -> Declaration:
    """Import ``folder/model.py`` as ``module_name`` and read its model class."""
    model_class = _model_class(_import_file(folder / MODEL_FILE, module_name))
    input_format = _input_format(model_class)
    inputs = tuple(_spec(info, "inputs") for info in model_class.inputs)
    if not inputs:
        raise ModelLoadError(f"{model_class.__name__}.inputs declares no input")
    if input_format == "pandas":
        _check_columns(inputs)
    return Declaration(model_class, input_format, inputs, _signatures(model_class))


def _import_file(path: Path, module_name: str) -> ModuleType:
    if not path.is_file():
        raise ModelLoadError(f"{path} does not exist")
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"{path} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickle look classes up there
    try:
        spec.loader.exec_module(module)
    except GeneratorExit:
        raise
    except BaseException as exc:  # SystemExit too: a model must not stop the server
        sys.modules.pop(module_name, None)
        raise ModelLoadError(
            f"importing {path.name} failed: {describe_user_error(exc, path.parent)}"
        ) from exc
    return module


def _model_class(module: ModuleType) -> type[ServingModel]:
    found = [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, ServingModel)
        and value.__module__ == module.__name__
    ]
    if len(found) > 1:
        found = [cls for cls in found if cls.__name__ == "Model"]
    if len(found) != 1:
        raise ModelLoadError(
            f"{MODEL_FILE} must define one subclass of serval.ServingModel (or several, one "
            f"of them named Model)"
        )
    return found[0]


def _input_format(model_class: type[ServingModel]) -> str:
    value = model_class.input_format
    if value not in _FORMATS:
        raise ModelLoadError(
            f"{model_class.__name__}.input_format is {value!r}; expected one of "
            f"{', '.join(_FORMATS)}"
        )
    return value


def _spec(info: object, field: str) -> TensorSpec:
    if not isinstance(info, TensorInfo):
        raise ModelLoadError(f"{field}: expected TensorInfo(name, datatype, shape), got {info!r}")
    try:
        datatype = DataType(info.datatype)
    except ValueError:
        known = ", ".join(d.value for d in DataType)
        raise ModelLoadError(
            f"{field}: {info.name!r} has unknown datatype {info.datatype!r}; expected one of "
            f"{known}"
        ) from None
    shape = tuple(int(dim) for dim in info.shape)
    if not shape or any(dim < -1 or dim == 0 for dim in shape):
        raise ModelLoadError(
            f"{field}: {info.name!r} has shape {list(shape)}; dimensions are positive or -1"
        )
    return TensorSpec(info.name, datatype, shape)


def _check_columns(inputs: tuple[TensorSpec, ...]) -> None:
    for spec in inputs:
        if len(spec.shape) > 2 or (len(spec.shape) == 2 and spec.shape[1] != 1):
            raise ModelLoadError(
                f"input_format 'pandas' makes each input a column: input {spec.name!r} must "
                f"have shape [-1] or [-1, 1], not {list(spec.shape)}"
            )


def _signatures(model_class: type[ServingModel]) -> dict[str, Signature]:
    if model_class.predict is ServingModel.predict:
        raise ModelLoadError(f"{model_class.__name__} does not define predict()")
    marked: dict[str, tuple[str, SignatureInfo]] = {}
    for attribute in dir(model_class):
        info = getattr(getattr(model_class, attribute, None), SIGNATURE_ATTRIBUTE, None)
        if isinstance(info, SignatureInfo):
            marked[info.name or attribute] = (attribute, info)
    predict_info = marked.pop(DEFAULT_SIGNATURE, None)
    predict_outputs = predict_info[1].outputs if predict_info else tuple(model_class.outputs)
    if predict_info is not None and predict_info[0] != "predict":
        raise ModelLoadError("the signature named 'predict' must be the predict() method")
    entries = [(DEFAULT_SIGNATURE, "predict", predict_outputs)]
    entries += [(name, attribute, info.outputs) for name, (attribute, info) in marked.items()]
    signatures = {}
    for name, attribute, outputs in entries:
        specs = tuple(_spec(info, f"outputs of {name}") for info in outputs)
        if not specs:
            raise ModelLoadError(f"signature {name!r} declares no outputs")
        signatures[name] = Signature(name, attribute, specs)
    return signatures


def _union_outputs(signatures: Iterable[Signature]) -> tuple[TensorSpec, ...]:
    union: dict[str, TensorSpec] = {}
    for signature in signatures:
        for spec in signature.outputs:
            known = union.setdefault(spec.name, spec)
            if known != spec:
                raise ModelLoadError(
                    f"output {spec.name!r} is declared twice with different types "
                    f"({known.datatype} {list(known.shape)}, {spec.datatype} {list(spec.shape)})"
                )
    return tuple(union.values())


def describe_user_error(exc: BaseException, folder: Path) -> str:
    """``Type: message`` and the line of the model's own code where it happened."""
    where = ""
    folder = folder.resolve()
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if Path(frame.filename).resolve().parent == folder:
            where = f" ({Path(frame.filename).name}, line {frame.lineno})"
            break
    message = exc.message if isinstance(exc, ServalError) else str(exc)
    return f"{type(exc).__name__}: {message}{where}"
