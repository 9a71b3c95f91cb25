"""ModelEngine's stop and the numbers the probes read (heartbeats, stalls, dead workers).

Draining in this codebase is layered: the server stops taking connections and lets accepted
requests finish (uvicorn's graceful shutdown), and a retired version is detached only once its
in-flight count reaches zero (`Reconciler._retire`). `ModelEngine.stop` is the last step: it
lets the batches already handed to workers finish and be answered, and refuses what is still
queued with a 503 instead of leaving it hanging.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from fastinfer.engine.errors import OverloadedError, WorkerDiedError
from tests.unit.fake_engine import FakeRuntime, Recorder, answer, rows, running_engine, submit


def test_stop_answers_the_running_batch_and_refuses_the_queued_ones() -> None:
    async def scenario() -> None:
        runtime = FakeRuntime()
        runtime.gate.clear()
        async with running_engine(runtime) as engine:
            running = await submit(engine, rows(0))
            await runtime.started()
            queued = [await submit(engine, rows(x)) for x in (1, 2)]
            stopping = asyncio.create_task(engine.stop())
            await asyncio.sleep(0.05)
            assert not stopping.done()  # it waits for the worker's batch
            runtime.gate.set()
            await asyncio.wait_for(stopping, 20)
            assert running.done()  # answered before stop returned
            assert await answer(running) == [{"value": 0}]
            for task in queued:
                with pytest.raises(OverloadedError) as caught:
                    await task
                assert caught.value.reason == "shutdown"
                assert caught.value.headers == {"Retry-After": "1"}
            assert engine.dead_workers() == ["infer-fake/1-0"]  # the threads have exited
        assert runtime.calls == [[0]]  # the queued rows were never computed

    asyncio.run(scenario())


def test_stop_does_not_wait_past_its_timeout_for_a_wedged_model() -> None:
    """A model call that never returns must not hold shutdown: stop gives up on the worker after
    its timeout (the threads are daemons) and still refuses the queued requests."""

    async def scenario() -> None:
        runtime = FakeRuntime()
        runtime.gate.clear()
        async with running_engine(runtime) as engine:
            wedged = await submit(engine, rows(0))
            await runtime.started()
            queued = await submit(engine, rows(1))
            await asyncio.wait_for(engine.stop(timeout=0.2), 20)
            with pytest.raises(OverloadedError):
                await queued
            assert not wedged.done()
            assert engine.dead_workers() == []  # still in the model call
            runtime.gate.set()
            # if the call ever returns, its answer is still delivered
            assert await answer(wedged) == [{"value": 0}]
            await asyncio.to_thread(engine.workers[0].join, 10)

    asyncio.run(scenario())


def test_probes_see_an_idle_engine_as_fine() -> None:
    async def scenario() -> None:
        runtime = FakeRuntime()
        async with running_engine(runtime, workers=2) as engine:
            await answer(await submit(engine, rows(1)))
            later = time.monotonic() + 1000
            assert engine.stalled_for(later) == 0.0  # nothing waits: idle is not a stall
            assert engine.dead_workers() == []
            status = engine.status()
            assert status["busy_workers"] == 0
            assert status["workers"] == 2
            assert status["batches"] == 1
            assert status["queued_requests"] == status["running_requests"] == 0
            assert sum(w.heartbeat.batches for w in engine.workers) == 1

    asyncio.run(scenario())


def test_a_busy_worker_counts_as_stalled_from_when_its_batch_started() -> None:
    """stalled_for: time without progress while work waits, so the watchdog can tell a wedged
    model from an idle one; it goes back to zero once the batch finishes."""

    async def scenario() -> None:
        runtime = FakeRuntime()
        runtime.gate.clear()
        async with running_engine(runtime) as engine:
            before = time.monotonic()
            running = await submit(engine, rows(1))
            await runtime.started()
            queued = await submit(engine, rows(2))
            heartbeat = engine.workers[0].heartbeat
            assert heartbeat.busy_since is not None and heartbeat.busy_since >= before
            later = time.monotonic() + 100
            assert engine.stalled_for(later) == pytest.approx(later - heartbeat.busy_since)
            assert engine.stalled_for(later) >= 100
            status = engine.status()
            assert (status["busy_workers"], status["running_requests"]) == (1, 1)
            assert (status["queued_requests"], status["queued_rows"]) == (1, 1)
            runtime.gate.set()
            await answer(running)
            await answer(queued)
            assert heartbeat.busy_since is None
            assert heartbeat.batches == 2
            assert heartbeat.last_progress >= before
            assert engine.stalled_for(time.monotonic() + 100) == 0.0

    asyncio.run(scenario())


def test_a_worker_killed_by_model_code_is_reported_dead_and_the_others_carry_on() -> None:
    """SystemExit from a model call ends its worker thread: dead_workers names it (readiness
    fails on that), its request fails at once (no answer can come; not at its 30 s deadline),
    the other worker keeps serving."""

    async def scenario() -> None:
        runtime = FakeRuntime()
        async with running_engine(runtime, workers=2) as engine:
            killer = await submit(engine, rows(666, die=True), timeout=30)
            with pytest.raises(WorkerDiedError):
                await asyncio.wait_for(killer, 20)
            dead = [w for w in engine.workers if w.heartbeat.busy_since is not None]
            assert len(dead) == 1
            await asyncio.to_thread(dead[0].join, 10)
            assert engine.dead_workers() == [dead[0].name]
            for x in range(5):
                assert await answer(await submit(engine, rows(x))) == [{"value": x}]
            assert engine.dead_workers() == [dead[0].name]

    asyncio.run(scenario())


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for a worker thread to get somewhere (fails after `timeout`, does not hang)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.01)


def test_admission_counts_only_the_workers_still_alive() -> None:
    """A dead worker drains nothing: the wait estimate divides by the live workers, the batch it
    died in leaves the running count, and neither it nor its stuck heartbeat counts as busy."""

    async def scenario() -> None:
        runtime = FakeRuntime()
        async with running_engine(runtime, workers=2) as engine:
            engine.service.observe(1, 1.0)  # as if it had measured 1 s per row
            killer = await submit(engine, rows(666, die=True))
            await until(lambda: any(w.died for w in engine.workers))
            (dead,) = [w for w in engine.workers if w.died]
            await asyncio.to_thread(dead.join, 10)
            with pytest.raises(WorkerDiedError):  # answered at once: no answer can come
                await asyncio.wait_for(killer, 20)
            assert engine.live_workers == 1
            assert (engine.running_items, engine.running_rows) == (0, 0)
            status = engine.status()
            assert (status["workers"], status["live_workers"], status["busy_workers"]) == (2, 1, 0)
            runtime.gate.clear()
            running = await submit(engine, rows(1))
            await runtime.started()
            queued = await submit(engine, rows(2, 3))
            assert engine.estimated_wait() == pytest.approx(3.0)  # 3 rows at 1 s, one worker
            runtime.gate.set()
            assert await answer(running) == [{"value": 1}]
            assert await answer(queued) == [{"value": 2}, {"value": 3}]

    asyncio.run(scenario())


def test_with_every_worker_dead_a_request_is_shed_at_once_not_timed_out() -> None:
    async def scenario() -> None:
        runtime = FakeRuntime()
        recorder = Recorder()
        async with running_engine(runtime, observer=recorder) as engine:
            killer = await submit(engine, rows(666, die=True))
            await asyncio.to_thread(engine.workers[0].join, 10)
            with pytest.raises(WorkerDiedError):  # answered at once: no answer can come
                await asyncio.wait_for(killer, 20)
            assert engine.live_workers == 0
            refused = await submit(engine, rows(1), timeout=30)
            with pytest.raises(OverloadedError) as caught:
                await refused
            assert caught.value.reason == "no_workers"
            assert caught.value.headers == {"Retry-After": "5"}
            assert recorder.rejections == ["no_workers"]
            assert engine.queued_items == 0
        assert 1 not in runtime.computed()

    asyncio.run(scenario())
