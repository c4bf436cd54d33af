"""One error hierarchy for the whole server; each adapter maps ``ErrorCode`` to its statuses."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from serval.core.lifecycle.states import ServableId


class ErrorCode(StrEnum):
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    INTERNAL = "INTERNAL"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"


class ServalError(Exception):
    """Base of every error serval reports to a client or operator."""

    code: ErrorCode = ErrorCode.INTERNAL
    # The version a request failed on, once the data plane had chosen one (it sets this), so
    # that observers can attribute the failure.
    servable: ServableId | None = None

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s


class InvalidInputError(ServalError):
    """The request is malformed or does not match the model (a client mistake)."""

    code = ErrorCode.INVALID_ARGUMENT


class ModelNotFoundError(ServalError):
    """No model, version or label of that name is known."""

    code = ErrorCode.NOT_FOUND


class ModelNotReadyError(ServalError):
    """The model is known but has no version that can serve right now."""

    code = ErrorCode.UNAVAILABLE


class ServerNotReadyError(ServalError):
    code = ErrorCode.UNAVAILABLE


class PayloadTooLargeError(ServalError):
    code = ErrorCode.PAYLOAD_TOO_LARGE


class DependencyUnavailableError(ServalError):
    """A store the answer needs (the feature store) cannot be reached: retry later."""

    code = ErrorCode.UNAVAILABLE


class AnswerNotFoundError(ServalError):
    """A row asked for an answer that does not exist (``precomputed`` with ``fallback:
    error`` and no precomputed answer for the row's key)."""

    code = ErrorCode.NOT_FOUND


class OverloadedError(ServalError):
    code = ErrorCode.RESOURCE_EXHAUSTED


class DeadlineExceededError(ServalError):
    code = ErrorCode.DEADLINE_EXCEEDED


class ClientGoneError(ServalError):
    """The client went away while its request waited: the model never ran it."""

    code = ErrorCode.UNAVAILABLE


class OperationNotAllowedError(ServalError):
    """A valid request that the server's current mode refuses (e.g. load in mode ``none``)."""

    code = ErrorCode.FAILED_PRECONDITION


class UnsupportedError(ServalError):
    code = ErrorCode.UNIMPLEMENTED


class ModelConfigError(ServalError):
    """A ``model.yaml`` that cannot be used: names the file, the key and the reason."""

    code = ErrorCode.INVALID_ARGUMENT


class ModelLoadError(ServalError):
    """A model version failed to load; the message carries the runtime's reason. Retrying
    will not help until the files or the configuration change."""

    code = ErrorCode.FAILED_PRECONDITION


class ModelExecutionError(ServalError):
    """The model itself failed while predicting (not the client's fault)."""

    code = ErrorCode.INTERNAL


class PortInUseError(ServalError):
    """A port the server was told to listen on is taken. ``setting`` names the setting
    (``http_port``, ``grpc_port``), so that the command line can name its flag."""

    code = ErrorCode.UNAVAILABLE

    def __init__(self, message: str, *, setting: str) -> None:
        super().__init__(message)
        self.setting = setting


class UnauthenticatedError(ServalError):
    """The request carries no credential, or one the server does not know."""

    code = ErrorCode.UNAUTHENTICATED


class PermissionDeniedError(ServalError):
    """The credential is known but its role does not allow the operation."""

    code = ErrorCode.PERMISSION_DENIED


class ToolError(ServalError):
    """A tool (``serval convert``, ``serval optimize``) cannot do what was asked; the message
    says why and what to do instead."""

    code = ErrorCode.FAILED_PRECONDITION
