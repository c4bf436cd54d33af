"""Core views -> protobuf messages for the RPCs other than ModelInfer (metadata, model
configuration, statistics, repository index), and the repository load parameters back."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from serval.core.dataplane import ModelConfigView, ServerMetadata
from serval.core.datatypes import DataType
from serval.core.errors import InvalidInputError, UnsupportedError
from serval.core.manager import IndexEntry
from serval.core.statistics import Duration, VersionStatistics
from serval.core.types import ModelMetadata, TensorSpec
from serval.protocols.grpc.generated import grpc_service_pb2 as pb
from serval.protocols.grpc.generated import model_config_pb2 as config_pb

# Triton's model configuration enum, by protocol datatype (BYTES is TYPE_STRING there).
CONFIG_DATATYPE: dict[DataType, config_pb.DataType] = {
    DataType.BOOL: config_pb.TYPE_BOOL,
    DataType.UINT8: config_pb.TYPE_UINT8,
    DataType.UINT16: config_pb.TYPE_UINT16,
    DataType.UINT32: config_pb.TYPE_UINT32,
    DataType.UINT64: config_pb.TYPE_UINT64,
    DataType.INT8: config_pb.TYPE_INT8,
    DataType.INT16: config_pb.TYPE_INT16,
    DataType.INT32: config_pb.TYPE_INT32,
    DataType.INT64: config_pb.TYPE_INT64,
    DataType.FP16: config_pb.TYPE_FP16,
    DataType.FP32: config_pb.TYPE_FP32,
    DataType.FP64: config_pb.TYPE_FP64,
    DataType.BYTES: config_pb.TYPE_STRING,
}


def server_metadata(metadata: ServerMetadata) -> pb.ServerMetadataResponse:
    return pb.ServerMetadataResponse(
        name=metadata.name, version=metadata.version, extensions=list(metadata.extensions)
    )


def _tensor_metadata(spec: TensorSpec) -> pb.ModelMetadataResponse.TensorMetadata:
    return pb.ModelMetadataResponse.TensorMetadata(
        name=spec.name, datatype=spec.datatype.value, shape=list(spec.shape)
    )


def model_metadata(metadata: ModelMetadata) -> pb.ModelMetadataResponse:
    return pb.ModelMetadataResponse(
        name=metadata.name,
        versions=list(metadata.versions),
        platform=metadata.platform,
        inputs=[_tensor_metadata(spec) for spec in metadata.inputs],
        outputs=[_tensor_metadata(spec) for spec in metadata.outputs],
        properties=_properties(metadata),
    )


def _properties(metadata: ModelMetadata) -> dict[str, str]:
    properties = {key: str(value) for key, value in metadata.parameters.items()}
    if metadata.signatures:
        properties["signatures"] = ",".join(metadata.signatures)
    return properties


def model_config(view: ModelConfigView) -> pb.ModelConfigResponse:
    """Triton's ModelConfig: when the model batches (max_batch_size > 0), ``dims`` leave out
    the leading batch dimension, as in Triton's config.pbtxt."""
    spec, metadata = view.spec, view.metadata
    batched = spec.max_batch_size > 0

    def dims(shape: tuple[int, ...]) -> list[int]:
        return list(shape[1:] if batched and shape else shape)

    config = config_pb.ModelConfig(
        name=metadata.name,
        platform=metadata.platform,
        backend=spec.runtime or "",
        max_batch_size=spec.max_batch_size,
        input=[
            config_pb.ModelInput(
                name=s.name, data_type=CONFIG_DATATYPE[s.datatype], dims=dims(s.shape)
            )
            for s in metadata.inputs
        ],
        output=[
            config_pb.ModelOutput(
                name=s.name, data_type=CONFIG_DATATYPE[s.datatype], dims=dims(s.shape)
            )
            for s in metadata.outputs
        ],
    )
    policy = spec.version_policy
    if policy.kind == "latest":
        config.version_policy.latest.num_versions = policy.num_versions
    elif policy.kind == "all":
        config.version_policy.all.SetInParent()
    else:
        config.version_policy.specific.versions.extend(policy.versions)
    for key, value in spec.parameters.items():
        text = json.dumps(value) if isinstance(value, bool) else str(value)
        config.parameters[key].string_value = text
    return pb.ModelConfigResponse(config=config)


def _duration(target: pb.StatisticDuration, source: Duration) -> None:
    target.count = source.count
    target.ns = source.ns


def model_statistics(found: Iterable[VersionStatistics]) -> pb.ModelStatisticsResponse:
    response = pb.ModelStatisticsResponse()
    for stats in found:
        entry = response.model_stats.add(
            name=stats.name,
            version=str(stats.version),
            last_inference=stats.last_inference_ms,
            inference_count=stats.inference_count,
            execution_count=stats.execution_count,
        )
        infer = entry.inference_stats
        _duration(infer.success, stats.success)
        _duration(infer.fail, stats.fail)
        _duration(infer.queue, stats.queue)
        _duration(infer.compute_input, stats.compute_input)
        _duration(infer.compute_infer, stats.compute_infer)
        _duration(infer.compute_output, stats.compute_output)
        for batch_size, batch in sorted(stats.batches.items()):
            row = entry.batch_stats.add(batch_size=batch_size)
            _duration(row.compute_input, batch.compute_input)
            _duration(row.compute_infer, batch.compute_infer)
            _duration(row.compute_output, batch.compute_output)
    return response


def repository_index(entries: Iterable[IndexEntry]) -> pb.RepositoryIndexResponse:
    return pb.RepositoryIndexResponse(
        models=[
            pb.RepositoryIndexResponse.ModelIndex(
                name=e.name,
                version="" if e.version is None else str(e.version),
                state=e.state,
                reason=e.reason,
            )
            for e in entries
        ]
    )


def load_config(params: Mapping[str, pb.ModelRepositoryParameter]) -> dict[str, Any] | None:
    """The ``config`` parameter of a load request (a JSON object of model.yaml's fields), or
    None. Triton's file overrides (``file:<version>/<name>``) are refused as unsupported."""
    files = sorted(key for key in params if key.startswith("file:"))
    if files:
        raise UnsupportedError(
            f"load parameters {', '.join(files)}: file overrides are not supported; put the "
            f"files in the model repository"
        )
    param = params.get("config")
    if param is None:
        return None
    choice = param.WhichOneof("parameter_choice")
    if choice == "string_param":
        text = param.string_param
    elif choice == "bytes_param":
        try:
            text = param.bytes_param.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInputError(f"load parameter 'config' is not UTF-8: {exc}") from exc
    else:
        raise InvalidInputError(
            f"load parameter 'config' must be a JSON object in string_param, received {choice}"
        )
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"load parameter 'config' is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise InvalidInputError(
            f"load parameter 'config' must be a JSON object, received {type(config).__name__}"
        )
    return config
