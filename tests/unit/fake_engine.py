"""A fake runtime and a running `ModelEngine` for the engine's unit tests (no HTTP, no files).

The thing under test is the engine, so the model is a fake whose behaviour the rows script and
whose calls are recorded. Tests hold a worker busy with `gate` (not with sleeps) and wait for a
call to start with `started()`, so the order of events is fixed whatever the machine's load.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from fastinfer.engine.batcher import ModelEngine
from fastinfer.engine.work import WorkItem
from fastinfer.model.spec import BatchingSpec, OutputSpec
from fastinfer.runtimes import Prediction, Row, Runtime

Answer = tuple[list[Prediction], WorkItem]


class FakeRuntime(Runtime):
    """Answers `{"value": row["x"]}` per row and records each call's x values in `calls`.

    - a row with `poison` set makes the whole call raise ValueError (what bisection isolates);
    - a row with `die` set raises SystemExit (model code that kills its worker thread);
    - while `gate` is clear, every call blocks on it: a busy worker, for as long as a test wants;
    - `sleep` seconds are slept in every call (a slow model, to teach the service-time model);
    - `cold` seconds are slept in the first call only (a model that warms up on its first call).
    """

    name = "fake"

    def __init__(self, *, sleep: float = 0.0, cold: float = 0.0) -> None:
        super().__init__(OutputSpec(kind="regressor"))
        self.calls: list[list[float]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.sleep = sleep
        self.cold = cold
        self._entered: queue.SimpleQueue[list[float]] = queue.SimpleQueue()

    def load(self, data: bytes) -> None:
        pass

    def predict(self, rows: list[Row], columns: list[str]) -> list[Prediction]:
        xs = [row["x"] for row in rows]
        self.calls.append(xs)
        self._entered.put(xs)
        if not self.gate.wait(timeout=30):
            raise TimeoutError("the test never opened the gate")
        if self.cold and len(self.calls) == 1:
            time.sleep(self.cold)
        if self.sleep:
            time.sleep(self.sleep)
        if any(row.get("die") for row in rows):
            raise SystemExit("the model killed its worker")
        if any(row.get("poison") for row in rows):
            raise ValueError(f"poisoned row in {xs}")
        return [{"value": x} for x in xs]

    async def started(self) -> list[float]:
        """The x values of the next call, once it has started (fails after 10 s)."""
        return await asyncio.to_thread(self._entered.get, True, 10)

    def computed(self) -> list[float]:
        """Every x value the model was ever asked about."""
        return [x for call in self.calls for x in call]


class Recorder:
    """An EngineObserver that keeps what it is told (the metrics' view)."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.rejections: list[str] = []

    def batch(self, model: str, rows: int, seconds: float, waits: list[float]) -> None:
        assert model == "fake"
        self.batches.append(rows)

    def rejected(self, model: str, reason: str) -> None:
        assert model == "fake"
        self.rejections.append(reason)


def rows(*xs: float, **flags: Any) -> list[Row]:
    return [{"x": x, **flags} for x in xs]


@contextlib.asynccontextmanager
async def running_engine(
    runtime: FakeRuntime,
    *,
    max_batch_size: int = 8,
    max_queue_size: int = 64,
    max_batch_delay_ms: float = 0.0,
    workers: int = 1,
    observer: Recorder | None = None,
) -> AsyncIterator[ModelEngine]:
    """A started engine for `runtime`; stopped (gate opened first) when the block ends."""
    engine = ModelEngine(
        "fake/1",
        runtime,
        ["x"],
        BatchingSpec(
            max_batch_size=max_batch_size,
            max_queue_size=max_queue_size,
            max_batch_delay_ms=max_batch_delay_ms,
        ),
        workers=workers,
        observer=observer,
        model_name="fake",
    )
    try:
        yield engine
    finally:
        runtime.gate.set()
        await engine.stop()


async def submit(
    engine: ModelEngine, batch: list[Row], *, timeout: float = 30.0, request_id: str = "r"
) -> asyncio.Task[Answer]:
    """Start a request and let it reach the queue (or be refused) before returning its task.

    `infer` does not suspend before it queues, so one pass of the loop is enough.
    """
    task = asyncio.create_task(engine.infer(batch, time.monotonic() + timeout, request_id))
    await asyncio.sleep(0)
    return task


async def answer(task: asyncio.Task[Answer]) -> list[Prediction]:
    """The predictions of a request, failing the test rather than hanging if none come."""
    predictions, _ = await asyncio.wait_for(task, 20)
    return predictions
