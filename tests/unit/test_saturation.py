"""The saturation gauge's arithmetic: stage readings, best rates, the loop meter, the process
gauge (Metrics.sample) and its average over processes."""

from __future__ import annotations

import asyncio
import time

import pytest

from fastinfer.observability import saturation
from fastinfer.observability.metrics import Metrics, ModelSample
from fastinfer.observability.metrics_multiprocess import _WithSaturation
from fastinfer.observability.saturation import (
    BestRate,
    EngineCounters,
    LoopMeter,
    LoopSample,
    SaturationMeter,
    stage_saturation,
)


def test_a_stage_reads_its_utilisation_until_work_waits_then_passes_one() -> None:
    assert stage_saturation(0.5, wait=0.0, service=0.001) == 0.5
    assert stage_saturation(0.5, wait=0.001, service=0.0) == 0.5  # no service time: no stretch
    assert stage_saturation(0.8, wait=0.002, service=0.001) == pytest.approx(2.4)
    assert stage_saturation(1.7, wait=-1.0, service=0.001) == 1.0  # clamped: noise, not load
    readings = [stage_saturation(u, u * u * 0.004, 0.001) for u in (0.1, 0.3, 0.5, 0.7, 0.9)]
    assert readings == sorted(readings)


def test_the_best_rate_starts_at_the_first_rises_partly_and_decays_by_half_life() -> None:
    best = BestRate(half_life_s=10.0, rise=0.2)
    assert best.update(100.0, now=0.0) == 100.0
    assert best.update(200.0, now=0.0) == pytest.approx(120.0)  # one lucky interval: a fifth
    assert best.update(50.0, now=10.0) == pytest.approx(60.0)  # a half-life later: half
    for _ in range(50):
        best.update(300.0, now=10.0)
    assert best.value == pytest.approx(300.0, rel=1e-3)  # a sustained rate is believed


def loop(seconds: float, busy: float, wait: float | None = 0.0) -> LoopSample:
    return LoopSample(seconds=seconds, busy_seconds=busy, wait=wait)


def test_the_loop_reads_low_at_light_load_once_it_has_shown_its_rate_under_load() -> None:
    meter = SaturationMeter()
    # Loaded: 2,500 requests in 0.25 s on 0.2 s of loop time (cheap per request: batched I/O).
    full = meter.loop_stage(loop(0.25, 0.2), answered=2500, now=1.0)
    assert full == pytest.approx(0.8)
    for step in range(20):
        meter.loop_stage(loop(0.25, 0.2), answered=2500, now=1.0 + step)
    # Light load: 125 requests, each dearer (a wake-up each), busy 40% of the time.
    light = meter.loop_stage(loop(0.25, 0.1), answered=125, now=30.0)
    assert light == pytest.approx(125 / 0.25 / 12500, rel=0.03)  # 4% of what it has shown
    assert light < 0.1 < 0.4  # far below its busy fraction


def test_the_loop_passes_one_when_requests_queue_for_it() -> None:
    meter = SaturationMeter()
    for step in range(20):
        meter.loop_stage(loop(0.25, 0.2, wait=0.0), answered=2500, now=float(step))
    # Saturated: same rate, a callback waits 5 requests' worth of loop time to run.
    queued = meter.loop_stage(loop(0.25, 0.2, wait=5 * 0.2 / 2500), answered=2500, now=30.0)
    assert queued == pytest.approx(0.8 * 6)


def test_an_idle_loop_reads_its_busy_fraction() -> None:
    meter = SaturationMeter()
    assert meter.loop_stage(loop(0.25, 0.001), answered=0, now=1.0) == pytest.approx(0.004)
    assert meter.loop_stage(loop(0.0, 0.0), answered=0, now=1.0) == 0.0


def test_the_loop_and_the_inference_threads_share_one_gil_so_the_plateau_reads_one() -> None:
    """At a fast model's plateau the loop is busy 89% of the time: the inference thread holds
    the GIL the rest. Counted together, the plateau reads 1.0 and half of it 0.5."""
    meter = SaturationMeter()
    workers_busy = 0.0
    meter.inference_stage([engine(0, 0, 0)], now=0.0)
    for step in range(1, 40):  # the plateau: 1,000 requests per 0.25 s
        workers_busy += 0.05
        meter.inference_stage([engine(workers_busy, workers_busy, 1000 * step)], now=step * 0.25)
        plateau = meter.loop_stage(
            loop(0.25, 0.89 * 0.25),
            answered=1000,
            now=step * 0.25,
            workers_busy=meter.workers_busy_seconds,
        )
    assert plateau == pytest.approx(1.0, abs=0.01)
    workers_busy += 0.03  # half the plateau: the loop dearer per request (fewer per wake-up)
    meter.inference_stage([engine(workers_busy, workers_busy, 40000)], now=10.0)
    half = meter.loop_stage(
        loop(0.25, 0.6 * 0.25), answered=500, now=10.0, workers_busy=meter.workers_busy_seconds
    )
    assert half == pytest.approx(0.5, abs=0.01)


def test_the_loop_meter_reads_the_lower_quartile_of_its_probe_waits() -> None:
    # Most probes landed in a burst of answers; a quarter found the loop idle: no standing queue.
    assert saturation.lower_quartile([0.0, 0.0, 0.0, 5.0, 5.0, 6.0, 7.0, 9.0]) == 0.0
    # Every probe waited: a standing queue.
    assert saturation.lower_quartile([2.0, 2.0, 3.0, 3.0, 4.0, 5.0, 5.0, 9.0]) == 2.75
    assert saturation.lower_quartile([1.5]) == 1.5


def engine(
    busy: float, batch_seconds: float, rows: int, queued: float = 0.0, workers: int = 1
) -> EngineCounters:
    return EngineCounters(("m", "1"), workers, busy, batch_seconds, rows, queued)


def test_a_worker_busy_with_small_batches_of_a_fixed_cost_model_is_not_full() -> None:
    meter = SaturationMeter()
    assert meter.inference_stage([engine(0, 0, 0)], now=0.0) == 0.0  # first sample: no interval
    # Under load: full batches of 64 rows in 10 ms, busy all the time: 6,400 rows/s.
    busy, seconds, rows = 0.0, 0.0, 0
    for step in range(1, 21):
        busy, seconds, rows = busy + 1.0, seconds + 1.0, rows + 6400
        full = meter.inference_stage([engine(busy, seconds, rows)], now=float(step))
    assert full == pytest.approx(1.0)
    # Light load: 1-row batches of the same 10 ms, busy all the time: 100 rows/s.
    light = meter.inference_stage([engine(busy + 1.0, seconds + 1.0, rows + 100)], now=21.0)
    assert light == pytest.approx(100 / 6400, rel=0.01)


def test_a_per_row_model_reads_its_busy_fraction_and_queued_batches_stretch_it() -> None:
    meter = SaturationMeter()
    meter.inference_stage([engine(0, 0, 0)], now=0.0)
    half = meter.inference_stage([engine(0.5, 0.5, 500)], now=1.0)
    assert half == pytest.approx(0.5)
    # Busy all the time at the same rate, with two full batches per worker waiting.
    queued = meter.inference_stage([engine(2.5, 2.5, 2500, queued=4.0, workers=2)], now=2.0)
    assert queued == pytest.approx(1.0 * (1 + 2.0))


def test_a_long_batch_in_progress_counts_as_busy_and_the_busiest_model_wins() -> None:
    meter = SaturationMeter()
    other = EngineCounters(("other", "1"), 1, 0.0, 0.0, 0, 0.0)
    meter.inference_stage([engine(0, 0, 0), other], now=0.0)
    # `m` is inside one long call (no batch finished): busy, no rate yet, one batch queued.
    reading = meter.inference_stage([engine(1.0, 0, 0, queued=1.0), other], now=1.0)
    assert reading == pytest.approx(2.0)
    assert meter.inference_stage([other], now=2.0) == 0.0  # `m` retired: forgotten


def hog(seconds: float) -> None:
    """Hold the loop (and this thread's CPU) for `seconds`."""
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


def test_the_loop_meter_measures_its_thread_and_the_wait_behind_queued_work() -> None:
    async def scenario() -> LoopSample:
        meter = LoopMeter()
        asyncio.get_running_loop().call_soon(hog, 0.05)
        meter.probe()  # queued behind the hog: waits its 50 ms
        meter.probe()
        await asyncio.sleep(0.1)
        return meter.read()

    sample = asyncio.run(scenario())
    assert sample.seconds >= 0.1
    assert sample.busy_seconds >= 0.04  # the hog ran on this thread
    assert sample.wait is not None and sample.wait >= 0.04


def test_the_loop_meter_reads_the_median_wait_one_slow_callback_is_not_a_queue() -> None:
    async def scenario() -> LoopSample:
        meter = LoopMeter()
        asyncio.get_running_loop().call_soon(hog, 0.05)
        meter.probe()  # behind the hog
        await asyncio.sleep(0.06)
        meter.probe()  # an idle loop: at once
        await asyncio.sleep(0)
        meter.probe()
        await asyncio.sleep(0.01)
        return meter.read()

    sample = asyncio.run(scenario())
    assert sample.wait is not None and sample.wait < 0.01


def test_no_probe_no_wait() -> None:
    async def scenario() -> LoopSample:
        meter = LoopMeter()
        await asyncio.sleep(0.01)
        return meter.read()

    assert asyncio.run(scenario()).wait is None


def test_the_engine_counts_rows_batch_seconds_and_busy_time_per_batch() -> None:
    from tests.unit.fake_engine import FakeRuntime, answer, rows, running_engine, submit

    async def scenario() -> None:
        runtime = FakeRuntime()
        runtime.gate.clear()
        async with running_engine(runtime, max_batch_size=8) as engine:
            first = await submit(engine, rows(1))
            await runtime.started()
            await asyncio.sleep(0.05)
            assert engine.busy_seconds() >= 0.04  # the running batch counts before it ends
            assert (engine.rows_done, engine.batch_seconds_done) == (0, 0.0)
            second = await submit(engine, rows(2, 3))
            runtime.gate.set()
            await answer(first)
            await answer(second)
            assert engine.rows_done == 3  # two batches: 1 row, then 2
            assert engine.batch_seconds_done >= 0.04
            assert engine.busy_seconds() == pytest.approx(engine.batch_seconds_done, abs=0.01)

    asyncio.run(scenario())


def test_the_loop_meter_is_read_on_its_loop_only() -> None:
    async def make() -> LoopMeter:
        return LoopMeter()

    meter = asyncio.run(make())
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool, pytest.raises(RuntimeError, match="event loop"):
        pool.submit(meter.read).result()


def test_thread_busy_seconds_falls_back_to_cpu_time_without_schedstat() -> None:
    assert saturation.thread_busy_seconds("/nonexistent/schedstat") == pytest.approx(
        time.thread_time(), abs=0.05
    )
    assert saturation.thread_busy_seconds() > 0


def sample(busy: float, batch_seconds: float, rows: int) -> ModelSample:
    return ModelSample(
        name="m",
        version="1",
        runtime="python",
        sha256="",
        serving=True,
        in_flight=0,
        workers=1,
        busy_seconds=busy,
        batch_seconds=batch_seconds,
        rows_done=rows,
    )


def gauges(metrics: Metrics) -> dict[str, float]:
    registry = _WithSaturation(metrics.registry)
    values: dict[str, float] = {}
    for family in registry.collect():
        for s in family.samples:
            label = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            values[f"{s.name}{{{label}}}"] = s.value
    return values


def test_metrics_publish_the_larger_stage_averaged_and_one_process_of_capacity() -> None:
    metrics = Metrics()
    metrics.sample([sample(0, 0, 0)], loop(0.25, 0.01))
    time.sleep(0.01)
    for step in range(1, 60):  # a saturated model: busy, full batches queued behind it
        metrics.sample([sample(step, step, 100 * step)], loop(0.25, 0.01))
    values = gauges(metrics)
    assert values["fastinfer_capacity{}"] == 1
    assert values["fastinfer_stage_saturation{stage=inference}"] > 0.9
    assert values["fastinfer_stage_saturation{stage=event_loop}"] < 0.1
    assert values["fastinfer_saturation{}"] == pytest.approx(values["fastinfer_load{}"])
    assert values["fastinfer_saturation{}"] > 0.9
    assert values["fastinfer_event_loop_busy_ratio{}"] == pytest.approx(0.04, abs=0.01)


def test_the_exposition_averages_the_processes() -> None:
    from prometheus_client import CollectorRegistry, Gauge

    registry = CollectorRegistry()
    Gauge("fastinfer_load", "", registry=registry).set(0.4 + 1.2)  # livesum of two processes
    Gauge("fastinfer_capacity", "", registry=registry).set(2)
    values = {s.name: s.value for f in _WithSaturation(registry).collect() for s in f.samples}
    assert values["fastinfer_saturation"] == pytest.approx(0.8)


def test_an_idle_pod_reading_falls_as_fast_when_sampled_once_a_second() -> None:
    """The sampler slows to 1 Hz while the loop is idle: the average weighs each sample by the
    interval it covers, so the reading decays in the same seconds as at 4 Hz."""
    readings = []
    for interval, samples in ((0.25, 40), (1.0, 10)):  # 10 s of idle either way
        metrics = Metrics()
        metrics.sample([sample(0, 0, 0)], loop(0.25, 0.25))
        for step in range(1, 40):  # loaded: a busy worker with full batches queued
            metrics.sample([sample(step, step, 100 * step)], loop(0.25, 0.01))
        busy = 39.0
        for _ in range(samples):
            metrics.sample([sample(busy, busy, 3900)], loop(interval, 0.0))
        readings.append(gauges(metrics)["fastinfer_saturation{}"])
    assert readings[0] == pytest.approx(readings[1], rel=0.05)
    assert readings[0] < 0.1
