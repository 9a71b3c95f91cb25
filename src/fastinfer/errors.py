"""Errors the service answers with. Each carries its HTTP status and a stable code.

The data plane raises these; each protocol's routes render them in its own wire shape.
"""

from __future__ import annotations

import re
import secrets
from typing import Any


def new_error_id() -> str:
    """A short random id for a 500: the response and the log line with the traceback share it."""
    return secrets.token_hex(6)


class ServiceError(Exception):
    status: int = 500
    code: str = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}


class MalformedRequest(ServiceError):  # noqa: N818 - named for what the client did
    status = 400
    code = "malformed_request"


class ModelNotFound(ServiceError):  # noqa: N818
    status = 404
    code = "model_not_found"


class PayloadTooLarge(ServiceError):  # noqa: N818
    status = 413
    code = "payload_too_large"


class RequestTimeout(ServiceError):  # noqa: N818
    """The client did not send its body in time (the connection is closed after the answer)."""

    status = 408
    code = "request_timeout"


class UnsupportedMediaType(ServiceError):  # noqa: N818
    status = 415
    code = "unsupported_media_type"


class InvalidInput(ServiceError):  # noqa: N818
    status = 422
    code = "invalid_input"


class ModelNotReady(ServiceError):  # noqa: N818
    status = 503
    code = "model_not_ready"


class InferenceFailed(ServiceError):  # noqa: N818
    status = 500
    code = "inference_failed"


class RequestRejected(ServiceError):  # noqa: N818
    """A pre-predict hook refused the request (422 unless the hook chose another status)."""

    status = 422
    code = "rejected"

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class PredictionLogUnavailable(ServiceError):  # noqa: N818
    """Durable prediction log: the prediction could not be recorded, so it is not answered."""

    status = 503
    code = "prediction_log_unavailable"


class PredictionNotFound(ServiceError):  # noqa: N818 - named for what is missing
    status = 404
    code = "prediction_not_found"


class NoReference(ServiceError):  # noqa: N818
    status = 409
    code = "no_reference"


class FeedbackDisabled(ServiceError):  # noqa: N818
    status = 409
    code = "feedback_disabled"


_PATH = re.compile(r"(?:[A-Za-z]:)?(?:/[^\s/:'\"(),]+)+/([^\s/:'\"(),]+)")
_EXCEPTION_NAME = re.compile(r"\b[A-Za-z_][\w.]*(?:Error|Exception|Failed): ")


def public_reason(reason: str) -> str:
    """A reason fit for a client that proved nothing (probes, 503s): file names without their
    directories, no exception class names. The full text stays in the log."""
    return _PATH.sub(r"\1", _EXCEPTION_NAME.sub("", reason))
