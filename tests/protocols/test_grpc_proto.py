"""serval's .proto files stay wire-compatible with Triton's (what tritonclient.grpc speaks), and
the generated modules stay in step with proto/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import tritonclient.grpc.model_config_pb2 as triton_config_pb
import tritonclient.grpc.service_pb2 as triton_pb
from google.protobuf.descriptor import Descriptor, FileDescriptor

from serval.protocols.grpc.generated import grpc_service_pb2 as pb
from serval.protocols.grpc.generated import model_config_pb2 as config_pb

ROOT = Path(__file__).resolve().parents[2]


def _messages(file: FileDescriptor) -> list[Descriptor]:
    found: list[Descriptor] = []
    pending = list(file.message_types_by_name.values())
    while pending:
        message = pending.pop()
        found.append(message)
        pending.extend(message.nested_types)
    return found


# Fields other clients' protos define and Triton's does not; Triton's clients skip them.
# ModelMetadataResponse.parameters: MLServer's and Seldon Core 2's field 6; the repository
# responses' fields: what KServe's clients read (tests/e2e/test_grpc_peers.py).
OIP_ONLY = {
    ("inference.ModelMetadataResponse", 6),
    ("inference.RepositoryModelLoadResponse", 1),
    ("inference.RepositoryModelLoadResponse", 2),
    ("inference.RepositoryModelUnloadResponse", 1),
    ("inference.RepositoryModelUnloadResponse", 2),
}
OIP_ONLY_MESSAGES = {"inference.ModelMetadataResponse.ParametersEntry"}

OURS = [
    message
    for message in _messages(pb.DESCRIPTOR) + _messages(config_pb.DESCRIPTOR)
    if message.full_name not in OIP_ONLY_MESSAGES
]


def _triton_message(full_name: str) -> Descriptor:
    for file in (triton_pb.DESCRIPTOR, triton_config_pb.DESCRIPTOR):
        try:
            return file.pool.FindMessageTypeByName(full_name)
        except KeyError:
            continue
    raise AssertionError(f"Triton has no message {full_name}")


@pytest.mark.parametrize("message", OURS, ids=[m.full_name for m in OURS])
def test_every_field_matches_triton(message: Descriptor) -> None:
    theirs = _triton_message(message.full_name)
    for field in message.fields:
        if (message.full_name, field.number) in OIP_ONLY:
            continue
        other = theirs.fields_by_number.get(field.number)
        where = f"{message.full_name}.{field.name}"
        assert other is not None, f"{where}: Triton has no field number {field.number}"
        assert (field.name, field.type, field.is_repeated) == (
            other.name,
            other.type,
            other.is_repeated,
        ), f"{message.full_name}.{field.name} differs from Triton's"
        if field.message_type is not None:
            assert field.message_type.full_name == other.message_type.full_name
        if field.enum_type is not None:
            assert field.enum_type.full_name == other.enum_type.full_name
        ours_oneof = field.containing_oneof.name if field.containing_oneof else None
        their_oneof = other.containing_oneof.name if other.containing_oneof else None
        assert ours_oneof == their_oneof


def test_core_messages_are_complete() -> None:
    """The messages every client touches carry all of Triton's fields, not a subset."""
    for name in (
        "ModelInferRequest",
        "ModelInferResponse",
        "InferTensorContents",
        "InferParameter",
        "ModelMetadataResponse",
        "InferStatistics",
        "ModelStatistics",
        "RepositoryModelLoadRequest",
    ):
        ours = pb.DESCRIPTOR.message_types_by_name[name]
        theirs = triton_pb.DESCRIPTOR.message_types_by_name[name]
        extra = {number for (message, number) in OIP_ONLY if message == ours.full_name}
        assert set(ours.fields_by_number) - extra == set(theirs.fields_by_number), name


def test_datatype_enum_matches_triton() -> None:
    ours = config_pb.DESCRIPTOR.enum_types_by_name["DataType"]
    theirs = triton_config_pb.DESCRIPTOR.enum_types_by_name["DataType"]
    assert {v.name: v.number for v in ours.values} == {v.name: v.number for v in theirs.values}


def test_instance_kind_enum_matches_triton() -> None:
    ours = config_pb.ModelInstanceGroup.DESCRIPTOR.enum_types_by_name["Kind"]
    theirs = triton_config_pb.ModelInstanceGroup.DESCRIPTOR.enum_types_by_name["Kind"]
    assert {v.name: v.number for v in ours.values} == {v.name: v.number for v in theirs.values}


def test_service_methods_match_triton() -> None:
    ours = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    theirs = triton_pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert ours.full_name == theirs.full_name == "inference.GRPCInferenceService"
    for method in ours.methods:
        other = theirs.methods_by_name[method.name]
        assert method.input_type.full_name == other.input_type.full_name
        assert method.output_type.full_name == other.output_type.full_name
    assert {m.name for m in ours.methods} >= {
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
        "ModelConfig",
        "ModelStatistics",
        "RepositoryIndex",
        "RepositoryModelLoad",
        "RepositoryModelUnload",
    }


def test_generated_modules_live_in_their_own_pool() -> None:
    """Both sets of messages load into one process (tritonclient uses the default pool)."""
    assert pb.DESCRIPTOR.pool is not triton_pb.DESCRIPTOR.pool
    ours = pb.ModelInferRequest(model_name="m", raw_input_contents=[b"x"])
    theirs = triton_pb.ModelInferRequest.FromString(ours.SerializeToString())
    assert theirs.model_name == "m"
    assert list(theirs.raw_input_contents) == [b"x"]


def test_generated_modules_are_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_grpc.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
