"""Core views -> protobuf messages for the RPCs other than ModelInfer (metadata, model
configuration, statistics, repository index), and the repository load parameters back."""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf import json_format

from serval.core.control import IndexEntry
from serval.core.dataplane import ModelConfigView, ServerMetadata
from serval.core.statistics import Duration, VersionStatistics
from serval.core.types import ModelMetadata, ParameterValue, TensorSpec
from serval.protocols.grpc.generated import grpc_service_pb2 as pb
from serval.protocols.grpc.generated import model_config_pb2 as config_pb
from serval.protocols.oip.repository import index_state
from serval.protocols.oip.triton_config import triton_model_config

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def server_metadata(metadata: ServerMetadata) -> pb.ServerMetadataResponse:
    return pb.ServerMetadataResponse(
        name=metadata.name, version=metadata.version, extensions=list(metadata.extensions)
    )


def _tensor_metadata(spec: TensorSpec) -> pb.ModelMetadataResponse.TensorMetadata:
    return pb.ModelMetadataResponse.TensorMetadata(
        name=spec.name, datatype=spec.datatype.value, shape=list(spec.shape)
    )


def model_metadata(metadata: ModelMetadata) -> pb.ModelMetadataResponse:
    message = pb.ModelMetadataResponse(
        name=metadata.name,
        versions=list(metadata.versions),
        platform=metadata.platform,
        inputs=[_tensor_metadata(spec) for spec in metadata.inputs],
        outputs=[_tensor_metadata(spec) for spec in metadata.outputs],
    )
    parameters: dict[str, ParameterValue] = dict(metadata.parameters)
    if metadata.signatures:
        parameters["signatures"] = ",".join(metadata.signatures)
    for key, value in parameters.items():
        _metadata_parameter(message.parameters[key], value)
    return message


def _metadata_parameter(target: pb.InferParameter, value: ParameterValue) -> None:
    """Field 6 as MLServer and Seldon Core 2 define it (Triton's and KServe's clients skip it).
    Their ``InferParameter`` has only the bool, int64 and string members, so any other value
    (a float, an integer past int64) goes as its text: a member they do not know would reach
    them as a parameter with no value."""
    if isinstance(value, bool):
        target.bool_param = value
    elif isinstance(value, int) and _INT64_MIN <= value <= _INT64_MAX:
        target.int64_param = value
    else:
        target.string_param = str(value)


def model_config(view: ModelConfigView) -> pb.ModelConfigResponse:
    """Triton's ModelConfig, read from the JSON form of
    ``serval.protocols.oip.triton_config`` (the one translation REST answers with too)."""
    config = json_format.ParseDict(triton_model_config(view), config_pb.ModelConfig())
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
        _duration(infer.cache_hit, stats.cache_hit)
        _duration(infer.cache_miss, stats.cache_miss)
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
                state=index_state(e.state),
                reason=e.reason,
            )
            for e in entries
        ]
    )
