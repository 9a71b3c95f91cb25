"""A unit of work: one request's rows on their way through the queue to a worker."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from fastinfer.runtimes import Prediction, Row


@dataclass(slots=True, eq=False)
class WorkItem:
    """One request's rows. The future gets its predictions, or the exception for this request."""

    rows: list[Row]
    deadline: float  # time.monotonic() by which the answer is useless
    request_id: str
    future: asyncio.Future[list[Prediction]]
    enqueued_at: float
    started_at: float | None = None  # taken into a batch
    cancelled: bool = False  # gave up while queued: skipped, never computed
    batch_wait: float = 0.0  # of the time queued, how long a free worker held on to fill a batch
    infer_seconds: float = 0.0  # the model call(s) of its batch
    finished_at: float | None = None  # answered by the worker (back on the event loop)
    batch_rows: int = 0
    batch_requests: int = 0

    def server_timing(self, encode_seconds: float) -> str:
        """The `Server-Timing` header: where this request's time went, in milliseconds."""
        if self.started_at is None or self.finished_at is None:
            return f"encode;dur={encode_seconds * 1000:.3f}"
        queued = self.started_at - self.enqueued_at
        waited = min(self.batch_wait, queued)
        dispatch = max(0.0, self.finished_at - self.started_at - self.infer_seconds)
        return (
            f"queue;dur={(queued - waited) * 1000:.3f}, "
            f"batch-wait;dur={waited * 1000:.3f}, "
            f"infer;dur={self.infer_seconds * 1000:.3f}, "
            f"dispatch;dur={dispatch * 1000:.3f}, "
            f"encode;dur={encode_seconds * 1000:.3f}, "
            f'batch;desc="rows={self.batch_rows} requests={self.batch_requests}"'
        )


@dataclass(slots=True)
class BatchOutcome:
    """What a worker hands back: per item, predictions or the exception that item caused."""

    results: list[list[Prediction] | BaseException]
    seconds: float
    rows: int
    calls: int  # 1 when the batch succeeded whole; more when a failure was isolated by bisection
    cold: bool = False  # its worker's first batch: may include warm-up, so not a cost sample
