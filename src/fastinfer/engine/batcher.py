"""One model's queue, admission control and batcher.

Requests wait in a bounded FIFO. A batch is formed only when a worker is free, from as many queued
requests as fit in `max_batch_size` rows, so batches grow with load and a lone request is never
held back (unless `max_batch_delay_ms` asks for it). Admission happens at the door: a full queue,
or an estimated wait longer than the request's deadline, is a 503 with a Retry-After computed from
the measured drain rate, instead of a timeout later.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import queue
import time
from collections import deque
from typing import Any, Protocol

from fastinfer.engine.errors import DeadlineExceededError, OverloadedError, WorkerDiedError
from fastinfer.engine.service_time import ServiceTimeModel
from fastinfer.engine.work import BatchOutcome, WorkItem
from fastinfer.engine.workers import InferenceWorker, Job
from fastinfer.model.spec import BatchingSpec
from fastinfer.runtimes import Prediction, Row, Runtime

_MAX_RETRY_AFTER = 60
_NO_WORKERS_RETRY_AFTER = 5  # about a readiness probe period: try another replica meanwhile


class EngineObserver(Protocol):
    """Told about batches and rejections (the metrics); called on the event loop."""

    def batch(self, model: str, rows: int, seconds: float, waits: list[float]) -> None: ...

    def rejected(self, model: str, reason: str) -> None: ...


class ModelEngine:
    """The engine for one loaded model in this process. Create and use it on the event loop."""

    def __init__(
        self,
        name: str,
        runtime: Runtime,
        columns: list[str],
        batching: BatchingSpec,
        *,
        workers: int,
        observer: EngineObserver | None = None,
        model_name: str | None = None,
    ) -> None:
        self.name = name
        self.model_name = model_name or name  # the metrics label (name without version)
        self.observer = observer
        self.batching = batching
        # Learned from warm batches only: never seeded from the self-test, whose time is the
        # model's cold first call (lazy allocation, JIT, caches), not its cost per row.
        self.service = ServiceTimeModel()
        self._loop = asyncio.get_running_loop()
        self._queue: deque[WorkItem] = deque()
        self.queued_items = 0
        self.queued_rows = 0
        self.running_items = 0
        self.running_rows = 0
        self.completed_batches = 0
        self.rows_done = 0  # rows of the finished batches, and the seconds those batches took:
        self.batch_seconds_done = 0.0  # how fast a batch goes (for the saturation gauge)
        self._wakeup = asyncio.Event()
        self._filled = asyncio.Event()
        self._free = asyncio.Semaphore(workers)
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self.workers = [
            InferenceWorker(f"infer-{name}-{i}", runtime, columns, self._jobs, self._loop)
            for i in range(workers)
        ]
        for worker in self.workers:
            worker.start()
        self._task = self._loop.create_task(self._batch_loop(), name=f"batcher-{name}")

    # -- admission -------------------------------------------------------------------------

    def estimated_wait(self, extra_rows: int = 0) -> float:
        """Seconds until `extra_rows` more rows would be answered, from the measured drain rate
        of the workers still alive (a dead one drains nothing)."""
        rows = self.queued_rows + self.running_rows + extra_rows
        return self.service.drain_seconds(rows, self.batching.max_batch_size, self.live_workers)

    def retry_after(self) -> int:
        return max(1, min(_MAX_RETRY_AFTER, math.ceil(self.estimated_wait())))

    def admit(self, rows: int, deadline: float, now: float | None = None) -> None:
        """Refuse (503 + Retry-After) a request of `rows` rows that could not be served in
        time: a full queue, no live worker, or a wait past its deadline while others' work is
        ahead. The data plane asks with one row before it reads or validates the body, so
        shedding under overload costs almost nothing; `infer` asks again with the real rows."""
        if now is None:
            now = time.monotonic()
        if self.queued_items >= self.batching.max_queue_size:
            if self.observer is not None:
                self.observer.rejected(self.model_name, "queue_full")
            raise OverloadedError(
                f"model {self.name!r} has {self.queued_items} requests queued (the limit)",
                reason="queue_full",
                retry_after=self.retry_after(),
                queued=self.queued_items,
            )
        if self.live_workers == 0:
            # Queued, it could only time out: every worker died (readiness says so) or stopped.
            if self.observer is not None:
                self.observer.rejected(self.model_name, "no_workers")
            raise OverloadedError(
                f"model {self.name!r} has no live inference worker",
                reason="no_workers",
                retry_after=_NO_WORKERS_RETRY_AFTER,
                queued=self.queued_items,
            )
        # Shed only when others' work is ahead: with nothing queued or running, waiting helps
        # no one. Before any warm batch is measured the estimate is zero, so nothing is shed
        # for its deadline on a guess.
        if not (self.queued_items or self.running_items):
            return
        wait = self.estimated_wait(rows)
        if wait > deadline - now:
            if self.observer is not None:
                self.observer.rejected(self.model_name, "deadline")
            raise OverloadedError(
                f"model {self.name!r} would answer in about {wait:.3f}s, after this request's "
                f"deadline ({deadline - now:.3f}s)",
                reason="deadline",
                retry_after=self.retry_after(),
                queued=self.queued_items,
            )

    async def infer(
        self, rows: list[Row], deadline: float, request_id: str
    ) -> tuple[list[Prediction], WorkItem]:
        """Queue `rows` and wait for their predictions; the item records when it queued and ran."""
        now = time.monotonic()
        self.admit(len(rows), deadline, now)
        future: asyncio.Future[list[Prediction]] = self._loop.create_future()
        item = WorkItem(rows, deadline, request_id, future, enqueued_at=now)
        self._queue.append(item)
        self.queued_items += 1
        self.queued_rows += len(rows)
        self._wakeup.set()
        if self.queued_rows >= self.batching.max_batch_size:
            self._filled.set()
        timer = self._loop.call_at(deadline, self._expire, item)
        try:
            predictions = await future
        except asyncio.CancelledError:
            self._abandon(item)
            raise
        finally:
            timer.cancel()
        return predictions, item

    def _abandon(self, item: WorkItem) -> None:
        """The awaiting request was cancelled (its client went away, say): if its rows are still
        queued, drop them so no worker computes an answer nobody will read, and count it."""
        if item.cancelled or item.started_at is not None:
            return  # already dropped at its deadline, or in a batch: its answer is discarded
        item.cancelled = True
        self.queued_items -= 1
        self.queued_rows -= len(item.rows)
        if self.observer is not None:
            self.observer.rejected(self.model_name, "cancelled")
        self._compact()

    def _compact(self) -> None:
        """Forget skipped (expired, cancelled) items once they outnumber what may wait: memory
        stays bounded even if the batcher is slow to pop them."""
        if len(self._queue) > 2 * self.batching.max_queue_size:
            self._queue = deque(i for i in self._queue if not i.cancelled)

    def _expire(self, item: WorkItem) -> None:
        if item.future.done():
            return
        if self.observer is not None:
            self.observer.rejected(self.model_name, "timeout")
        if item.started_at is None:
            item.cancelled = True  # never computed: the batcher skips it
            self.queued_items -= 1
            self.queued_rows -= len(item.rows)
            stage = "queued"
        else:
            stage = "inference"
        item.future.set_exception(
            DeadlineExceededError(
                f"the deadline passed while the request was {stage}"
                + ("; it was not computed" if stage == "queued" else ""),
                stage=stage,
            )
        )
        self._compact()

    # -- batching --------------------------------------------------------------------------

    async def _batch_loop(self) -> None:
        delay = self.batching.max_batch_delay_ms / 1000
        while True:
            await self._free.acquire()
            try:
                while self.queued_items == 0:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                waited = 0.0
                if delay and self.queued_rows < self.batching.max_batch_size:
                    self._filled.clear()
                    holding = time.monotonic()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._filled.wait(), delay)
                    waited = time.monotonic() - holding
                batch = self._take_batch(waited)
            except BaseException:
                self._free.release()
                raise
            if batch:
                self._jobs.put((batch, self._on_done))
            else:
                self._free.release()

    def _take_batch(self, waited: float = 0.0) -> list[WorkItem]:
        limit = self.batching.max_batch_size
        batch: list[WorkItem] = []
        rows = 0
        now = time.monotonic()
        while self._queue:
            item = self._queue[0]
            if item.cancelled:
                self._queue.popleft()
                continue
            if batch and rows + len(item.rows) > limit:
                break
            self._queue.popleft()
            item.started_at = now
            batch.append(item)
            rows += len(item.rows)
        for item in batch:
            item.batch_wait = waited
        self.queued_items -= len(batch)
        self.queued_rows -= rows
        self.running_items += len(batch)
        self.running_rows += rows
        return batch

    def _on_done(self, items: list[WorkItem], outcome: BatchOutcome | None) -> None:
        if outcome is None:
            # Its worker died in the model call: the rows no longer run anywhere, so they leave
            # the running count (the wait estimate); the slot is not given back, since that
            # worker is gone. Their requests are answered now (500), not at their deadline:
            # no answer can come. Not run again elsewhere: the batch may hold what killed it.
            self.running_items -= len(items)
            self.running_rows -= sum(len(item.rows) for item in items)
            for item in items:
                if not item.future.done():
                    item.future.set_exception(WorkerDiedError(f"{self.name}: worker died"))
            return
        self._free.release()
        self.running_items -= len(items)
        self.running_rows -= outcome.rows
        self.completed_batches += 1
        self.rows_done += outcome.rows
        self.batch_seconds_done += outcome.seconds
        if outcome.calls == 1 and not outcome.cold:
            self.service.observe(outcome.rows, outcome.seconds)
        if self.observer is not None:
            waits = [i.started_at - i.enqueued_at for i in items if i.started_at is not None]
            self.observer.batch(self.model_name, outcome.rows, outcome.seconds, waits)
        now = time.monotonic()
        for item, result in zip(items, outcome.results, strict=True):
            item.finished_at, item.infer_seconds = now, outcome.seconds
            item.batch_rows, item.batch_requests = outcome.rows, len(items)
            if item.future.done():
                continue  # its deadline passed while it ran
            if isinstance(result, BaseException):
                item.future.set_exception(result)
            else:
                item.future.set_result(result)

    # -- state for probes --------------------------------------------------------------------

    @property
    def live_workers(self) -> int:
        """Worker threads still running: the capacity admission counts on."""
        return sum(1 for w in self.workers if w.alive)

    @property
    def busy_workers(self) -> int:
        """Live workers inside a model call right now (a dead one stays 'busy' in its heartbeat)."""
        return sum(1 for w in self.workers if w.alive and w.heartbeat.busy_since is not None)

    def busy_seconds(self) -> float:
        """Seconds all workers together have spent in model calls, running batches included."""
        now = time.monotonic()
        return sum(w.heartbeat.busy_total(now) for w in self.workers)

    def dead_workers(self) -> list[str]:
        return [w.name for w in self.workers if not w.alive]

    def stalled_for(self, now: float) -> float:
        """Seconds the inference path has made no progress while work was waiting (0 if fine)."""
        pending: list[float] = [
            w.heartbeat.busy_since for w in self.workers if w.heartbeat.busy_since
        ]
        oldest_queued = next((i.enqueued_at for i in self._queue if not i.cancelled), None)
        if oldest_queued is not None:
            pending.append(oldest_queued)
        if not pending:
            return 0.0
        last_progress = max(w.heartbeat.last_progress for w in self.workers)
        return max(0.0, now - max(last_progress, min(pending)))

    def status(self) -> dict[str, Any]:
        fixed, per_row = self.service.coefficients()
        return {
            "queued_requests": self.queued_items,
            "queued_rows": self.queued_rows,
            "running_requests": self.running_items,
            "workers": len(self.workers),
            "live_workers": self.live_workers,
            "busy_workers": self.busy_workers,
            "batches": self.completed_batches,
            "batch_fixed_ms": round(fixed * 1000, 3),
            "batch_per_row_ms": round(per_row * 1000, 4),
            "estimated_wait_s": round(self.estimated_wait(), 4),
        }

    async def stop(self, timeout: float = 5.0) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        for _ in self.workers:
            self._jobs.put(None)
        deadline = time.monotonic() + timeout
        for worker in self.workers:
            await asyncio.to_thread(worker.join, max(0.0, deadline - time.monotonic()))
        for item in self._queue:
            if not item.future.done():
                item.future.set_exception(
                    OverloadedError("the server is shutting down", reason="shutdown", retry_after=1)
                )
