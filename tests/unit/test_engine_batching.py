"""ModelEngine's batcher without HTTP: pull-when-free batching, the batch delay, bisection.

Every scenario holds the only worker busy on a gate (not a sleep), queues requests behind it and
then opens the gate, so which requests share a model call is decided, not timed.
"""

from __future__ import annotations

import asyncio

import pytest

from fastinfer.engine.work import WorkItem
from tests.unit.fake_engine import FakeRuntime, Recorder, answer, rows, running_engine, submit


def test_a_lone_request_under_light_load_runs_at_once() -> None:
    """With no batch delay, a free worker takes a single request without waiting for company."""

    async def scenario() -> tuple[list[dict[str, float]], WorkItem]:
        runtime = FakeRuntime()
        async with running_engine(runtime, max_batch_size=64) as engine:
            task = await submit(engine, rows(7))
            predictions, item = await asyncio.wait_for(task, 20)
            assert runtime.calls == [[7]]
            return predictions, item

    predictions, item = asyncio.run(scenario())
    assert predictions == [{"value": 7}]
    assert item.batch_wait == 0.0
    assert (item.batch_rows, item.batch_requests) == (1, 1)
    assert item.enqueued_at <= item.started_at <= item.finished_at  # type: ignore[operator]


def test_requests_queued_behind_a_busy_worker_share_the_next_call() -> None:
    """Batches form only when a worker is free, from what queued meanwhile, up to the row limit;
    each request gets its own rows' answers back."""

    async def scenario() -> None:
        runtime = FakeRuntime()
        runtime.gate.clear()
        recorder = Recorder()
        async with running_engine(runtime, max_batch_size=4, observer=recorder) as engine:
            first = await submit(engine, rows(0))
            assert await runtime.started() == [0]
            queued = [
                await submit(engine, rows(1, 2)),
                await submit(engine, rows(3, 4)),
                await submit(engine, rows(5)),
            ]
            assert (engine.queued_items, engine.queued_rows) == (3, 5)
            assert (engine.running_items, engine.running_rows) == (1, 1)
            runtime.gate.set()
            assert await answer(first) == [{"value": 0}]
            assert [await answer(t) for t in queued] == [
                [{"value": 1}, {"value": 2}],
                [{"value": 3}, {"value": 4}],
                [{"value": 5}],
            ]
            _, second = queued[0].result()
            assert (second.batch_rows, second.batch_requests) == (4, 2)
            assert (engine.queued_items, engine.running_items) == (0, 0)
            assert engine.completed_batches == 3
        assert runtime.calls == [[0], [1, 2, 3, 4], [5]]
        assert recorder.batches == [1, 4, 1]

    asyncio.run(scenario())


def test_a_request_is_never_split_across_calls() -> None:
    """A request that does not fit in what is left of a batch waits whole for the next one; one
    larger than max_batch_size runs alone, whole, rather than being cut."""

    async def scenario() -> None:
        runtime = FakeRuntime()
        runtime.gate.clear()
        async with running_engine(runtime, max_batch_size=4) as engine:
            first = await submit(engine, rows(0))
            await runtime.started()
            small = await submit(engine, rows(1))
            fits_not = await submit(engine, rows(2, 3, 4, 5))
            oversize = await submit(engine, rows(*range(10, 16)))
            last = await submit(engine, rows(6))
            runtime.gate.set()
            for task in (first, small, fits_not, oversize, last):
                await answer(task)
            assert await answer(oversize) == [{"value": x} for x in range(10, 16)]
        assert runtime.calls == [[0], [1], [2, 3, 4, 5], list(range(10, 16)), [6]]

    asyncio.run(scenario())


def test_batch_delay_holds_a_free_worker_for_more_rows() -> None:
    """max_batch_delay_ms: a free worker waits (up to the delay) for more rows, so two requests
    arriving close together share one call even though no worker was busy."""

    async def scenario() -> None:
        runtime = FakeRuntime()
        async with running_engine(runtime, max_batch_size=4, max_batch_delay_ms=400) as engine:
            a = await submit(engine, rows(1))
            b = await submit(engine, rows(2))
            assert await answer(a) == [{"value": 1}]
            assert await answer(b) == [{"value": 2}]
            _, item = a.result()
            assert item.batch_wait > 0  # the worker held on, then ran the partial batch
            assert item.batch_requests == 2
        assert runtime.calls == [[1, 2]]

    asyncio.run(scenario())


def test_batch_delay_ends_as_soon_as_the_batch_is_full() -> None:
    """The delay is for filling a batch: a full batch does not wait at all."""

    async def scenario() -> None:
        runtime = FakeRuntime()
        async with running_engine(runtime, max_batch_size=2, max_batch_delay_ms=1000) as engine:
            # Both queue in one pass of the loop, before the batcher looks: the batch is full.
            tasks = [
                asyncio.create_task(
                    engine.infer(rows(x), asyncio.get_running_loop().time() + 30, "r")
                )
                for x in (1, 2)
            ]
            for task in tasks:
                await answer(task)
            assert [t.result()[1].batch_wait for t in tasks] == [0.0, 0.0]
            # One queued request makes the worker hold; the second fills the batch and ends the
            # hold well before the delay (1 s) runs out.
            a = await submit(engine, rows(3))
            b = await submit(engine, rows(4))
            await answer(a)
            await answer(b)
            assert a.result()[1].batch_wait < 1.0
        assert runtime.calls == [[1, 2], [3, 4]]

    asyncio.run(scenario())


@pytest.mark.parametrize("poisoned", [0, 5, 7])
def test_bisection_fails_only_the_poisoned_request(poisoned: int) -> None:
    """A batch whose call raises is bisected: only the request that causes the error gets it,
    the others their answers, in 1 + 2·log2(n) calls; the failed batch's time is not learned."""

    async def scenario() -> None:
        runtime = FakeRuntime()
        runtime.gate.clear()
        recorder = Recorder()
        async with running_engine(runtime, max_batch_size=8, observer=recorder) as engine:
            first = await submit(engine, rows(-1))
            await runtime.started()
            tasks = [
                await submit(engine, rows(i, poison=(i == poisoned)), request_id=f"r{i}")
                for i in range(8)
            ]
            runtime.gate.set()
            await answer(first)
            samples = engine.service.samples
            for i, task in enumerate(tasks):
                if i == poisoned:
                    with pytest.raises(ValueError, match="poisoned"):
                        await asyncio.wait_for(task, 20)
                else:
                    assert await answer(task) == [{"value": i}]
            assert engine.service.samples == samples  # a bisected batch's time says nothing
            assert engine.completed_batches == 2
        calls_after_first = runtime.calls[1:]
        assert calls_after_first[0] == list(range(8))  # one batch of all eight first
        assert len(calls_after_first) == 1 + 2 * 3
        assert recorder.batches == [1, 8]
        # every healthy request was computed in a call that succeeded
        assert sorted(x for call in calls_after_first if poisoned not in call for x in call) == [
            i for i in range(8) if i != poisoned
        ]

    asyncio.run(scenario())


def test_answers_do_not_depend_on_how_requests_were_batched() -> None:
    """Many requests of mixed sizes through two workers: each gets exactly its own rows back."""

    async def scenario() -> None:
        runtime = FakeRuntime()
        async with running_engine(runtime, max_batch_size=5, workers=2) as engine:
            requests = [rows(*range(i * 10, i * 10 + (i % 3) + 1)) for i in range(30)]
            tasks = [await submit(engine, r) for r in requests]
            for request, task in zip(requests, tasks, strict=True):
                assert await answer(task) == [{"value": row["x"]} for row in request]
        assert sorted(runtime.computed()) == sorted(r["x"] for req in requests for r in req)
        assert max(len(call) for call in runtime.calls) <= 5

    asyncio.run(scenario())
