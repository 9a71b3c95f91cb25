"""Engine outcomes that become HTTP statuses: 503 (shed at the door) and 504 (too late)."""

from __future__ import annotations

import contextlib

from fastinfer.errors import ServiceError


class OverloadedError(ServiceError):
    """Shed at admission: the queue is full, or the wait would outlast the deadline."""

    status = 503
    code = "overloaded"

    def __init__(self, message: str, *, reason: str, retry_after: int, queued: int = 0) -> None:
        super().__init__(
            message,
            details={"reason": reason, "queued_requests": queued, "retry_after_s": retry_after},
            headers={"Retry-After": str(retry_after)},
        )
        self.reason = reason
        self.retry_after = retry_after


class DeadlineExceededError(ServiceError):
    """The request's deadline passed before its answer was ready."""

    status = 504
    code = "deadline_exceeded"

    def __init__(self, message: str, *, stage: str) -> None:
        super().__init__(message, details={"stage": stage})
        self.stage = stage


class WorkerDiedError(Exception):
    """Model code ended the inference worker running this request's batch (SystemExit & co.):
    no answer can come, so the request fails now (a 500 with an error id) rather than at its
    deadline."""


_FAILED_ROW = "fastinfer_failed_row"


def mark_failed_row(exc: BaseException, row: int) -> None:
    """Record on the model's exception which row of its request it failed on (its type is kept:
    callers and logs see what the model raised)."""
    with contextlib.suppress(AttributeError):  # an exception type that takes no attributes
        setattr(exc, _FAILED_ROW, row)


def failed_row(exc: BaseException) -> int | None:
    """The row of its request a model failure was narrowed down to, if it was."""
    row = getattr(exc, _FAILED_ROW, None)
    return row if isinstance(row, int) else None
