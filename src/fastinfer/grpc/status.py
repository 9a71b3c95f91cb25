"""REST errors → gRPC status codes, in one table, and the trailing metadata that goes with them.

Every refusal the data plane, the guard or the v2 codec makes carries an HTTP status; gRPC
answers with the code the table maps it to, the same message, and trailing metadata:
`retry-after` (seconds, as REST's Retry-After header) on RESOURCE_EXHAUSTED and UNAVAILABLE
when the refusal says when to retry, `fastinfer-error-code` (the REST error's `code`) and
`x-request-id`. A bug is INTERNAL with an error id, never its traceback.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from fastinfer.errors import ServiceError
from fastinfer.protocols.v2_tensors import V2Error, V2TooManyRows
from fastinfer.repository.changes import ChangeRefused

STATUS_CODES: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,  # a malformed request or tensor
    401: grpc.StatusCode.UNAUTHENTICATED,  # no API key, or a wrong one
    403: grpc.StatusCode.PERMISSION_DENIED,  # the key lacks the scope or the model
    404: grpc.StatusCode.NOT_FOUND,  # no such model or version
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    409: grpc.StatusCode.FAILED_PRECONDITION,  # a change the repository refuses now
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,  # more rows (or bytes) than one request may carry
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,  # rows the model's schema (or a pre-hook) rejects
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,  # over a key's rate limit or daily quota
    499: grpc.StatusCode.CANCELLED,  # the client went away
    500: grpc.StatusCode.INTERNAL,  # the model failed, or a bug (with an error id)
    503: grpc.StatusCode.UNAVAILABLE,  # overloaded, draining, or the model is not ready
    504: grpc.StatusCode.DEADLINE_EXCEEDED,  # the deadline passed before the answer
}
RETRY_AFTER = "retry-after"
ERROR_CODE = "fastinfer-error-code"
REQUEST_ID = "x-request-id"


def status_code(status: int) -> grpc.StatusCode:
    """The gRPC code of an HTTP status (other 4xx: INVALID_ARGUMENT; other 5xx: INTERNAL)."""
    code = STATUS_CODES.get(status)
    if code is not None:
        return code
    return grpc.StatusCode.INVALID_ARGUMENT if status < 500 else grpc.StatusCode.INTERNAL


@dataclass(frozen=True, slots=True)
class Refusal:
    """A call's error: the HTTP status it has in REST, its gRPC code, message and metadata."""

    status: int
    code: grpc.StatusCode
    message: str
    metadata: tuple[tuple[str, str], ...]


def expected(exc: BaseException) -> bool:
    """Whether an error is a refusal the service means to make (else: a bug, logged)."""
    return isinstance(exc, ServiceError | V2Error | ChangeRefused)


def refusal(exc: BaseException, request_id: str, error_id: str) -> Refusal:
    """The refusal for an error a call raised (`error_id`: shown for an unexpected one)."""
    headers: dict[str, str]
    if isinstance(exc, V2TooManyRows):
        status, message, code, headers = 413, str(exc), "payload_too_large", {}
    elif isinstance(exc, V2Error):
        status, message, code, headers = 400, str(exc), "malformed_request", {}
    elif isinstance(exc, ServiceError):
        status, message, code, headers = exc.status, exc.message, exc.code, exc.headers
    elif isinstance(exc, ChangeRefused):
        status, message, code, headers = exc.status, exc.message, exc.code, {}
    else:
        status, code, headers = 500, "internal_error", {}
        message = f"internal error (error id {error_id}, request id {request_id})"
    metadata = [(ERROR_CODE, code), (REQUEST_ID, request_id)]
    retry = headers.get("Retry-After")
    if retry is not None:
        metadata.append((RETRY_AFTER, retry))
    return Refusal(status, status_code(status), message, tuple(metadata))
