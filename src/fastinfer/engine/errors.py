"""Engine outcomes that become HTTP statuses: 503 (shed at the door) and 504 (too late)."""

from __future__ import annotations

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
