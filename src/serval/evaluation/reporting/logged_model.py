"""A monitored model as the offline commands (``serval monitor export|report``) see it: its
``model.yaml`` read from the repository, and its inputs and outputs derived from its logged
tensors, since no server is running to report its metadata."""

from __future__ import annotations

from pathlib import Path

from serval.core.lifecycle.source import FileSystemSource
from serval.core.tensors.datatypes import DataType
from serval.core.types import TensorSpec
from serval.evaluation.analysis.outputs import PredictionOutputs
from serval.evaluation.analysis.reference import Reference, load_reference
from serval.evaluation.recording.monitored import MonitoredModel
from serval.evaluation.recording.tensor_log import decode_tensors
from serval.storage.evaluation import EvaluationStore, LoggedPrediction


class RepositoryError(ValueError):
    """The repository or the model's model.yaml cannot be used (the message says why)."""


def monitored_model(repository: Path, name: str) -> MonitoredModel:
    """The model ``name`` of ``repository`` as its model.yaml configures it."""
    if not repository.is_dir():
        raise RepositoryError(f"--repository {repository}: no such folder")
    source = FileSystemSource(repository).scan_model(name)
    if source is None:
        raise RepositoryError(f"--repository {repository}: no model folder {name!r}")
    if source.spec is None:
        raise RepositoryError(source.config_error or f"{source.path}/model.yaml is not valid")
    if source.spec.monitoring is None:
        raise RepositoryError(
            f"{source.path}/model.yaml has no monitoring section: nothing says how to "
            "evaluate the model"
        )
    keys = frozenset(key.name for key in source.spec.keys)
    return MonitoredModel(name, source.spec.monitoring, keys, source.path)


def logged_specs(
    record: LoggedPrediction,
) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """The model's inputs and outputs as a logged record shows them: the first dimension (the
    rows) is -1."""

    def specs(blob: bytes) -> tuple[TensorSpec, ...]:
        return tuple(
            TensorSpec(name, DataType(tensor.datatype), (-1, *tensor.shape[1:]))
            for name, tensor in decode_tensors(blob).items()
        )

    return specs(record.inputs), specs(record.outputs)


def newest_specs(
    store: EvaluationStore, model: str
) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """The inputs and outputs of the newest record of the highest version logged (empty when
    nothing is logged)."""
    counts = store.counts(model)
    newest = store.recent_predictions(model, max(counts), 1) if counts else []
    return logged_specs(newest[0]) if newest else ((), ())


def read_reference(
    model: MonitoredModel, inputs: tuple[TensorSpec, ...], outputs: PredictionOutputs | None
) -> tuple[Reference | None, str]:
    """The model's reference mapped to ``inputs``, or None and why it cannot be used."""
    name = model.monitoring.reference
    if name is None:
        return None, "model.yaml names no reference (monitoring.reference)"
    try:
        return load_reference(model.folder / name, inputs, outputs, model.keys), ""
    except ImportError as exc:
        return None, f"{exc.name} is not installed (pip install 'serval-server[monitoring]')"
    except (ValueError, OSError) as exc:  # ReferenceFileError names the file and the column
        return None, str(exc)


def feature_names(
    store: EvaluationStore, model: MonitoredModel
) -> tuple[dict[str, list[str]], str]:
    """Per input of several values a row, the reference's names of its columns (for an
    export with one column per feature); empty, and why, when the reference cannot say."""
    inputs, _ = newest_specs(store, model.name)
    reference, reason = read_reference(model, inputs, None)
    if reference is None:
        return {}, reason
    names: dict[str, list[str]] = {}
    for source in reference.feature_map.sources:
        if source.index is not None:
            names.setdefault(source.input, []).append(source.feature)
    return names, ""
