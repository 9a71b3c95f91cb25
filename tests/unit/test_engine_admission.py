"""ModelEngine's admission and deadlines without HTTP: the bounded queue, shedding at the door by
the learned service time, and requests whose deadline passes while queued or running."""

from __future__ import annotations

import asyncio

import pytest

from fastinfer.engine.errors import DeadlineExceededError, OverloadedError
from tests.unit.fake_engine import FakeRuntime, Recorder, answer, rows, running_engine, submit


def test_a_full_queue_refuses_with_503_and_a_retry_after_from_the_drain_rate() -> None:
    """max_queue_size bounds the requests waiting; the next one is refused at once (not timed
    out later), with Retry-After = the estimated time to drain what is queued and running."""

    async def scenario() -> None:
        runtime = FakeRuntime()
        runtime.gate.clear()
        recorder = Recorder()
        async with running_engine(runtime, max_queue_size=2, observer=recorder) as engine:
            engine.service.observe(1, 3.0)  # as if it had measured 3 s for one warm row
            running = await submit(engine, rows(0), timeout=60)
            await runtime.started()
            queued = [await submit(engine, rows(x), timeout=60) for x in (1, 2)]
            refused = await submit(engine, rows(3), timeout=60)
            with pytest.raises(OverloadedError) as caught:
                await refused
            error = caught.value
            assert (error.status, error.code, error.reason) == (503, "overloaded", "queue_full")
            assert error.headers == {"Retry-After": "9"}  # 3 rows ahead x 3 s, one worker
            assert error.details == {
                "reason": "queue_full",
                "queued_requests": 2,
                "retry_after_s": 9,
            }
            assert recorder.rejections == ["queue_full"]
            runtime.gate.set()
            for task in (running, *queued):
                await answer(task)
            # the bound is on what waits, not on what was ever refused: there is room again
            assert await answer(await submit(engine, rows(4))) == [{"value": 4}]
        assert 3 not in runtime.computed()

    asyncio.run(scenario())


def test_retry_after_is_at_least_one_second_and_at_most_a_minute() -> None:
    async def scenario() -> None:
        runtime = FakeRuntime()
        runtime.gate.clear()
        async with running_engine(runtime) as engine:
            engine.service.observe(1, 100.0)
            assert engine.retry_after() == 1  # nothing queued: come back soon
            running = await submit(engine, rows(0), timeout=600)
            await runtime.started()
            assert engine.estimated_wait() == pytest.approx(100.0)
            assert engine.retry_after() == 60
            runtime.gate.set()
            await answer(running)

    asyncio.run(scenario())


def test_a_deadline_shorter_than_the_learned_wait_is_refused_at_the_door() -> None:
    """Once the engine has measured slow batches, a request that could only be answered after
    its deadline is shed with a 503 before it is queued, so it costs the model nothing; one with
    time enough is admitted behind the same work."""

    async def scenario() -> None:
        runtime = FakeRuntime(sleep=0.3)
        recorder = Recorder()
        async with running_engine(runtime, observer=recorder) as engine:
            await answer(await submit(engine, rows(0)))  # the worker's first batch: not learned
            assert engine.service.samples == 0
            await answer(await submit(engine, rows(0)))  # teaches it: one row takes >= 0.3 s
            assert engine.service.batch_seconds(1) >= 0.3
            runtime.gate.clear()
            running = await submit(engine, rows(1))
            await runtime.started()
            hurried = await submit(engine, rows(2), timeout=0.1)
            with pytest.raises(OverloadedError) as caught:
                await hurried
            assert caught.value.reason == "deadline"
            assert caught.value.status == 503
            assert int(caught.value.headers["Retry-After"]) >= 1
            assert recorder.rejections == ["deadline"]
            assert engine.queued_items == 0
            patient = await submit(engine, rows(3), timeout=60)
            runtime.gate.set()
            assert await answer(running) == [{"value": 1}]
            assert await answer(patient) == [{"value": 3}]
        assert 2 not in runtime.computed()

    asyncio.run(scenario())


def test_no_deadline_shedding_when_nothing_is_queued_or_running() -> None:
    """One slow measurement must not make an idle engine refuse every request: with no work
    ahead of it, a request is admitted whatever the estimate says (and then answered)."""

    async def scenario() -> None:
        runtime = FakeRuntime()
        runtime.gate.clear()
        recorder = Recorder()
        async with running_engine(runtime, observer=recorder) as engine:
            engine.service.observe(1, 10.0)
            assert engine.estimated_wait(1) == pytest.approx(10.0)
            idle = await submit(engine, rows(1), timeout=5)
            await runtime.started()
            # The same deadline with work ahead of it is shed.
            behind = await submit(engine, rows(2), timeout=5)
            with pytest.raises(OverloadedError, match="would answer in about"):
                await behind
            runtime.gate.set()
            assert await answer(idle) == [{"value": 1}]
        assert recorder.rejections == ["deadline"]

    asyncio.run(scenario())


def test_a_cold_first_call_is_not_learned_so_nothing_is_shed_right_after_startup() -> None:
    """A model's first call pays for its warm-up (here 0.5 s, later calls take microseconds).
    Read as cost per row, it would shed the requests queued behind the next batch and send
    Retry-After of tens of seconds; it is not learned, so they are all served, and a full queue
    says come back in 1 s."""

    async def scenario() -> None:
        runtime = FakeRuntime(cold=0.5)
        recorder = Recorder()
        async with running_engine(runtime, max_queue_size=5, observer=recorder) as engine:
            assert await answer(await submit(engine, rows(0))) == [{"value": 0}]  # the cold call
            assert engine.service.samples == 0
            assert engine.estimated_wait(64) == 0.0
            runtime.gate.clear()
            running = await submit(engine, rows(*range(8)), timeout=1.0)
            await runtime.started()
            queued = [await submit(engine, rows(*range(8)), timeout=1.0) for _ in range(5)]
            refused = await submit(engine, rows(9), timeout=1.0)
            with pytest.raises(OverloadedError) as caught:
                await refused
            assert caught.value.reason == "queue_full"
            assert caught.value.headers == {"Retry-After": "1"}
            runtime.gate.set()
            for task in (running, *queued):
                assert len(await answer(task)) == 8
            assert recorder.rejections == ["queue_full"]
            assert engine.service.samples >= 1  # warm batches are learned
            assert engine.service.batch_seconds(8) < 0.25

    asyncio.run(scenario())


def test_a_deadline_that_passes_while_queued_is_a_504_and_the_rows_are_never_computed() -> None:
    async def scenario() -> None:
        runtime = FakeRuntime()
        runtime.gate.clear()
        recorder = Recorder()
        async with running_engine(runtime, observer=recorder) as engine:
            running = await submit(engine, rows(0))
            await runtime.started()
            expiring = await submit(engine, rows(1, 2), timeout=0.2)
            assert engine.queued_rows == 2
            with pytest.raises(DeadlineExceededError) as caught:
                await asyncio.wait_for(expiring, 20)
            error = caught.value
            assert (error.status, error.code, error.stage) == (504, "deadline_exceeded", "queued")
            assert "not computed" in error.message
            assert (engine.queued_items, engine.queued_rows) == (0, 0)  # it no longer counts
            assert recorder.rejections == ["timeout"]
            runtime.gate.set()
            await answer(running)
            # the batcher skips the expired request; the next one is served normally
            assert await answer(await submit(engine, rows(3))) == [{"value": 3}]
        assert runtime.calls == [[0], [3]]

    asyncio.run(scenario())


def test_a_deadline_that_passes_while_running_is_a_504_and_the_late_answer_is_dropped() -> None:
    async def scenario() -> None:
        runtime = FakeRuntime()
        runtime.gate.clear()
        async with running_engine(runtime) as engine:
            slow = await submit(engine, rows(1), timeout=0.2)
            await runtime.started()
            with pytest.raises(DeadlineExceededError) as caught:
                await asyncio.wait_for(slow, 20)
            assert caught.value.stage == "inference"
            assert engine.running_items == 1  # the worker is still on it
            runtime.gate.set()
            # the late answer goes nowhere, and the engine carries on
            assert await answer(await submit(engine, rows(2))) == [{"value": 2}]
            assert engine.running_items == 0
            assert engine.completed_batches == 2
        assert runtime.calls == [[1], [2]]

    asyncio.run(scenario())


def test_a_request_cancelled_while_queued_is_dropped_from_its_batch_and_counted() -> None:
    """A request whose awaiting task is cancelled (its client went away) while it waits in the
    queue no longer counts towards the wait, is never computed, and is counted as `cancelled`."""

    async def scenario() -> None:
        runtime = FakeRuntime()
        runtime.gate.clear()
        recorder = Recorder()
        async with running_engine(runtime, observer=recorder) as engine:
            running = await submit(engine, rows(0))
            await runtime.started()
            doomed = await submit(engine, rows(1, 2))
            kept = await submit(engine, rows(3))
            assert (engine.queued_items, engine.queued_rows) == (2, 3)
            doomed.cancel()
            with pytest.raises(asyncio.CancelledError):
                await doomed
            assert (engine.queued_items, engine.queued_rows) == (1, 1)
            assert recorder.rejections == ["cancelled"]
            runtime.gate.set()
            assert await answer(running) == [{"value": 0}]
            assert await answer(kept) == [{"value": 3}]
            assert (engine.queued_items, engine.queued_rows) == (0, 0)
        assert runtime.calls == [[0], [3]]  # the cancelled rows left the batch they would join

    asyncio.run(scenario())


def test_a_request_cancelled_while_running_leaves_the_engine_consistent() -> None:
    """Once in a batch the rows are being computed: the answer is dropped, nothing is counted
    as cancelled, and the engine goes on serving."""

    async def scenario() -> None:
        runtime = FakeRuntime()
        runtime.gate.clear()
        recorder = Recorder()
        async with running_engine(runtime, observer=recorder) as engine:
            running = await submit(engine, rows(0))
            await runtime.started()
            running.cancel()
            with pytest.raises(asyncio.CancelledError):
                await running
            assert engine.running_items == 1
            runtime.gate.set()
            assert await answer(await submit(engine, rows(1))) == [{"value": 1}]
            assert (engine.running_items, engine.queued_items) == (0, 0)
        assert recorder.rejections == []
        assert runtime.calls == [[0], [1]]

    asyncio.run(scenario())
