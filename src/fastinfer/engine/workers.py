"""Inference workers: threads that own the model calls, so the event loop never runs model code.

Each worker reports a heartbeat (when it started its current batch, when it last finished one);
probes read those numbers instead of asking the worker anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fastinfer.engine.errors import mark_failed_row
from fastinfer.engine.work import BatchOutcome, WorkItem
from fastinfer.observability.logging import get_logger
from fastinfer.runtimes import Prediction, Row, Runtime

log = get_logger("fastinfer.engine")

# The callback gets the batch's outcome, or None when model code killed the worker mid-batch.
Job = tuple[list[WorkItem], Callable[[list[WorkItem], BatchOutcome | None], None]]


@dataclass
class Heartbeat:
    started_at: float
    busy_since: float | None = None
    last_progress: float = 0.0
    batches: int = 0
    busy_seconds: float = 0.0  # in model calls, finished batches only (the saturation gauge)

    def busy_total(self, now: float) -> float:
        """Seconds spent in model calls so far, the running batch included (read from any
        thread: a batch ending between the two reads is counted twice for one sample, at most)."""
        since = self.busy_since
        return self.busy_seconds + (now - since if since is not None else 0.0)


def run_batch(runtime: Runtime, columns: list[str], items: Sequence[WorkItem]) -> BatchOutcome:
    """Predict a batch; if the call raises, bisect so only the failing requests get the error."""
    started = time.perf_counter()
    calls = 0

    def predict(rows: list[Row]) -> list[Prediction]:
        nonlocal calls
        calls += 1
        predictions = runtime.predict(rows, columns)
        if len(predictions) != len(rows):
            raise _WrongCountError(
                f"the model returned {len(predictions)} predictions for {len(rows)} rows"
            )
        return predictions

    def attempt(group: Sequence[WorkItem]) -> list[list[Prediction] | BaseException]:
        rows = [row for item in group for row in item.rows]
        try:
            predictions = predict(rows)
        except Exception as exc:
            if len(group) == 1:
                row = None if isinstance(exc, _WrongCountError) else _failing_row(predict, rows)
                if row is not None:
                    mark_failed_row(exc, row)
                log.error(
                    "inference_failed",
                    request_id=group[0].request_id,
                    rows=len(rows),
                    row=row,
                    exc_info=exc,
                )
                return [exc]
            middle = len(group) // 2
            return attempt(group[:middle]) + attempt(group[middle:])
        results: list[list[Prediction] | BaseException] = []
        offset = 0
        for item in group:
            results.append(predictions[offset : offset + len(item.rows)])
            offset += len(item.rows)
        return results

    results = attempt(items)
    return BatchOutcome(
        results=results,
        seconds=time.perf_counter() - started,
        rows=sum(len(item.rows) for item in items),
        calls=calls,
    )


class _WrongCountError(RuntimeError):
    """The model answered another number of rows than it was given: no row is to blame."""


def _failing_row(predict: Callable[[list[Row]], list[Prediction]], rows: list[Row]) -> int | None:
    """The index of a row that fails alone, by bisecting a request the model failed on (a few
    more calls, only on failure), so its 500 can say which row; None if no half fails alone."""
    start, end = 0, len(rows)  # rows[start:end] fails
    while end - start > 1:
        middle = (start + end) // 2
        if _fails(predict, rows[start:middle]):
            end = middle
        elif _fails(predict, rows[middle:end]):
            start = middle
        else:
            return None
    return start


def _fails(predict: Callable[[list[Row]], list[Prediction]], rows: list[Row]) -> bool:
    try:
        predict(rows)
    except Exception:
        return True
    return False


class InferenceWorker(threading.Thread):
    """Runs batches from `jobs` one at a time and hands outcomes back to the event loop."""

    def __init__(
        self,
        name: str,
        runtime: Runtime,
        columns: list[str],
        jobs: queue.SimpleQueue[Job | None],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        super().__init__(name=name, daemon=True)  # a wedged model must not block process exit
        self._runtime = runtime
        self._columns = columns
        self._jobs = jobs
        self._loop = loop
        now = time.monotonic()
        self.heartbeat = Heartbeat(started_at=now, last_progress=now)
        self.died = False  # model code killed it (set before the thread has quite ended)

    @property
    def alive(self) -> bool:
        """Running and able to take batches (is_alive() alone lags a death by a moment)."""
        return self.is_alive() and not self.died

    def run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            items, on_done = job
            started = self.heartbeat.busy_since = time.monotonic()
            try:
                outcome = run_batch(self._runtime, self._columns, items)
                outcome.cold = self.heartbeat.batches == 0
            except BaseException as exc:  # SystemExit & co. from model code: this worker is gone
                log.critical("inference_worker_died", worker=self.name, exc_info=exc)
                self.died = True  # before the callback: admission must not count it meanwhile
                with contextlib.suppress(RuntimeError):  # the loop closed: shutting down
                    self._loop.call_soon_threadsafe(on_done, items, None)
                return
            self.heartbeat.last_progress = time.monotonic()
            self.heartbeat.busy_seconds += self.heartbeat.last_progress - started
            self.heartbeat.busy_since = None
            self.heartbeat.batches += 1
            try:
                self._loop.call_soon_threadsafe(on_done, items, outcome)
            except RuntimeError:  # the loop closed under us: shutting down
                return
