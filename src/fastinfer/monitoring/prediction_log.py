"""The prediction log: every (sampled) prediction, written off the request path in batches.

A request only appends a reference to its rows and predictions to a bounded buffer (no copy,
no serialisation); when the buffer is full the request's rows are dropped and counted, never
waited for. A task of the server process turns waiting entries into records (redacting fields)
and hands them, in batches, to the sink on a worker thread. A batch the sink refused stays at
the head of the buffer and is tried again; on shutdown what is left is written before exit.

So a process killed with SIGKILL loses what its buffer held: up to `flush_s` of rows, or up to
`capacity` rows while the sink fails. In durable mode a request instead waits for its rows'
batch to be written (the sink's `write` returned: fsync'ed, committed) before it is answered,
and is refused (503) if that fails; concurrent requests share a batch, so one write covers many.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastinfer.errors import PredictionLogUnavailable
from fastinfer.monitoring.sinks import Record, Sink
from fastinfer.observability.logging import get_logger
from fastinfer.runtimes import Prediction, Row

log = get_logger("fastinfer.prediction_log")
REDACTED = "[redacted]"
_WARN_EVERY_S = 10.0


@dataclass(slots=True)
class _Entry:
    model: str
    version: str
    request_id: str
    time: float  # epoch seconds
    latency_ms: float | None
    rows: list[Row] | None  # None for a feedback record
    outputs: list[Prediction] | Record
    written: asyncio.Future[None] | None = None  # durable mode: done once its batch is written

    @property
    def size(self) -> int:
        return len(self.rows) if self.rows is not None else 1


class PredictionLog:
    """The buffer and the batch writer of one server process."""

    def __init__(
        self,
        sink: Sink,
        *,
        sample_rate: float = 1.0,
        redact: Collection[str] = (),
        capacity: int = 10_000,
        batch_rows: int = 1_000,
        flush_s: float = 1.0,
        on_batch: Callable[[list[Record]], None] | None = None,
        count: Callable[[str, int], None] | None = None,
        durable: bool = False,
    ) -> None:
        self.sink = sink
        self.sample_rate = sample_rate
        self.redact = frozenset(redact)
        self.capacity = capacity
        self.batch_rows = batch_rows
        self.flush_s = flush_s
        self.durable = durable
        self._on_batch = on_batch  # sees each batch once, before the sink (the feedback index)
        self._count = count or (lambda _outcome, _n: None)
        self._pending: deque[_Entry] = deque()
        self._pending_rows = 0
        self._retry: list[Record] | None = None  # a batch the sink refused
        self._waiters: list[asyncio.Future[None]] = []  # durable: requests waiting on _retry
        self._failing = False  # the last write failed (durable requests are refused meanwhile)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._dropped_since_warning = 0
        self._warned_at = 0.0
        self.written = 0
        self.dropped = 0

    @property
    def pending_rows(self) -> int:
        return self._pending_rows + (len(self._retry) if self._retry else 0)

    def offer(
        self,
        model: str,
        version: str,
        request_id: str,
        rows: list[Row],
        predictions: list[Prediction],
        latency_ms: float | None,
    ) -> asyncio.Future[None] | None:
        """Log one request's predictions (if sampled); never blocks, never raises.

        In durable mode it returns a future to await before answering: done once the rows are
        written, or failed with PredictionLogUnavailable (buffer full, sink failing)."""
        # Sampling for volume, not security: a predictable generator is fine here.
        if self.sample_rate < 1.0 and random.random() >= self.sample_rate:  # noqa: S311  # nosec B311
            return None
        entry = _Entry(model, version, request_id, time.time(), latency_ms, rows, predictions)
        if self.durable:
            entry.written = asyncio.get_running_loop().create_future()
        self._append(entry)
        return entry.written

    def offer_feedback(self, record: Record) -> None:
        """A feedback record, written with the predictions (always: feedback is not sampled)."""
        model, version, request_id = record["model"], record["version"], record["request_id"]
        self._append(_Entry(model, version, request_id, time.time(), None, None, record))

    def _append(self, entry: _Entry) -> None:
        size = entry.size
        if self.pending_rows + size > self.capacity:
            self._drop(size, "buffer_full")
            _fail(entry.written, "the prediction log's buffer is full")
            return
        self._pending.append(entry)
        self._pending_rows += size
        if entry.written is not None:
            if self._failing:  # keep the rows for when the sink recovers, but answer now
                _fail(entry.written, "the prediction log's sink is failing")
            self._wake.set()  # a request waits: write now, not at the next flush_s
        elif self._pending_rows >= self.batch_rows:
            self._wake.set()

    def _drop(self, rows: int, reason: str) -> None:
        self.dropped += rows
        self._count(f"dropped_{reason}", rows)
        self._dropped_since_warning += rows
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY_S:
            log.warning(
                "prediction_log_dropped",
                rows=self._dropped_since_warning,
                reason=reason,
                capacity=self.capacity,
            )
            self._warned_at = now
            self._dropped_since_warning = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        # Stopped by a flag, not by cancelling: Python 3.11's wait_for swallows a cancellation
        # that lands as the event is set (a write wakes it often), which would hang shutdown.
        while not self._closing:
            if self._retry is None:  # a refused batch is retried after the pause below
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.flush_s)
            self._wake.clear()
            if self._closing:
                return
            try:
                await self.flush()
            except Exception:  # the sink failed: logged; the batch stays for the next round
                await asyncio.sleep(min(self.flush_s, 1.0))

    async def flush(self) -> None:
        """Write everything waiting now, batch by batch; raises (keeping the batch) on failure."""
        while self._retry is not None or self._pending:
            if self._retry is None:
                self._retry = self._take_batch()
                await asyncio.to_thread(self._index, self._retry)
            batch = self._retry
            try:
                await asyncio.to_thread(self.sink.write, batch)
            except Exception as exc:
                log.error(
                    "prediction_log_write_failed",
                    rows=len(batch),
                    error=f"{type(exc).__name__}: {exc}"[:300],
                )
                self._count("failed_writes", 1)
                self._failing = True
                self._fail_waiting("the prediction log's sink failed")
                raise
            self._retry, self._failing = None, False
            self.written += len(batch)
            self._count("written", len(batch))
            for waiter in self._waiters:
                if not waiter.done():  # not given up (the request's deadline)
                    waiter.set_result(None)
            self._waiters = []

    def _fail_waiting(self, reason: str) -> None:
        """Durable: answer every request waiting on the buffer now, as nothing will be written
        soon (their rows stay in the buffer and are written once the sink takes them)."""
        for waiter in self._waiters:
            _fail(waiter, reason)
        self._waiters = []
        for entry in self._pending:
            _fail(entry.written, reason)

    async def close(self, timeout: float = 10.0) -> None:
        """Write what is left (called on shutdown, after the last request); then close the sink."""
        started = time.monotonic()
        if self._task is not None:
            self._closing = True
            self._wake.set()
            # Let a write under way finish (cancelling it would leave its thread writing the
            # batch while the flush below writes it again); past the timeout, give up on it.
            done, _ = await asyncio.wait([self._task], timeout=timeout)
            if not done:
                self._task.cancel()
            timeout = max(0.0, timeout - (time.monotonic() - started))
        try:
            await asyncio.wait_for(self.flush(), timeout)
        except Exception:  # the sink is down or too slow: what is left is lost, and said so
            self._fail_waiting("the server is shutting down")
            lost = self.pending_rows
            if lost:
                self._drop(lost, "shutdown")
                log.error("prediction_log_lost_at_shutdown", rows=lost)
        finally:
            await asyncio.to_thread(self.sink.close)
        log.info("prediction_log_closed", written=self.written, dropped=self.dropped)

    def _take_batch(self) -> list[Record]:
        records: list[Record] = []
        while self._pending and (not records or len(records) < self.batch_rows):
            entry = self._pending.popleft()
            self._pending_rows -= entry.size
            records.extend(self._records(entry))
            if entry.written is not None and not entry.written.done():
                self._waiters.append(entry.written)
        return records

    def _records(self, entry: _Entry) -> list[Record]:
        stamp = datetime.fromtimestamp(entry.time, UTC).isoformat(timespec="microseconds")
        if entry.rows is None:
            assert isinstance(entry.outputs, dict)
            return [{**entry.outputs, "time": stamp}]
        redact = self.redact
        return [
            {
                "type": "prediction",
                "request_id": entry.request_id,
                "row": index,
                "time": stamp,
                "model": entry.model,
                "version": entry.version,
                "input": _redacted(row, redact) if redact else row,
                "output": output,
                "latency_ms": entry.latency_ms,
            }
            for index, (row, output) in enumerate(zip(entry.rows, entry.outputs, strict=True))
        ]

    def _index(self, records: list[Record]) -> None:
        if self._on_batch is None:
            return
        try:
            self._on_batch(records)
        except Exception:  # the feedback index is a convenience; the log itself goes on
            log.exception("prediction_index_failed")


def _fail(waiter: asyncio.Future[None] | None, reason: str) -> None:
    """Tell a request waiting in durable mode that its rows are not (yet) written."""
    if waiter is not None and not waiter.done():
        waiter.set_exception(
            PredictionLogUnavailable(
                f"{reason}: the prediction was not answered because it could not be logged",
                headers={"Retry-After": "1"},
            )
        )


def _redacted(row: Row, fields: frozenset[str]) -> dict[str, Any]:
    return {k: (REDACTED if k in fields and v is not None else v) for k, v in row.items()}
