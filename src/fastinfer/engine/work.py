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


@dataclass(slots=True)
class BatchOutcome:
    """What a worker hands back: per item, predictions or the exception that item caused."""

    results: list[list[Prediction] | BaseException]
    seconds: float
    rows: int
    calls: int  # 1 when the batch succeeded whole; more when a failure was isolated by bisection
