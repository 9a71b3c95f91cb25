"""The arithmetic of `fastinfer_saturation`: how close a server process is to the most it can
serve, at whichever of its stages saturates first.

A request goes through two stages of its server process, and either can be the bottleneck:

- the event loop (HTTP parsing, validation, encoding: one thread), what fills up first for a
  fast model;
- the inference workers of its model, for a slow one.

Each stage reads utilisation * (1 + wait / service):

- utilisation is the work done over the most the stage has shown it can do. For the workers:
  rows per second over the best rows per busy second. For the event loop: requests per second
  over the best requests per second of the process's one GIL, i.e. per second the loop and the
  inference threads were busy together (at most the interval: one GIL). A busy fraction alone
  misleads both ways: per-call costs (a model's fixed cost per batch, the loop's cost per
  wake-up) shrink per request as load grows, so a stage busy with small batches at low load is
  far from full; and the loop alone tops out below 1 at capacity, because the inference threads
  hold the GIL the rest of the time (counting them with the loop is what makes the plateau read
  1.0, not 0.9).
- wait / service is how long work queues for the stage relative to the time it takes: for the
  loop, the lower quartile of the waits of callbacks queued at random moments of the interval,
  over the loop time one request costs; for the workers, the queued rows in full batches per
  worker (each batch one service time). The lower quartile, not the median: a batch's answers
  reach the loop together, so below capacity most moments fall in such a burst, yet some find
  the loop idle; at capacity none does, and the quartile grows with every extra request.

The process reads the larger stage; the exposition averages the processes. 1.0: the pod serves
as fast as it can; above 1.0 requests wait for it. Until a stage has been loaded, its best rate
is what light load showed: it reads conservatively high (a busy stage as a full one).
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

_SCHEDSTAT = "/proc/thread-self/schedstat"
BEST_RATE_HALF_LIFE_S = 600.0  # how soon a stage that got slower (a noisy neighbour) is believed
_MIN_LOOP_REQUESTS = 20  # requests in a sample for its loop rate to count as a best


def thread_busy_seconds(path: str = _SCHEDSTAT) -> float:
    """This thread's seconds on a CPU plus seconds runnable but waiting for one (Linux's
    schedstat): the time it wanted to run, so a host whose CPUs are all taken reads as busy,
    where CPU time alone would read low. Elsewhere, CPU time alone."""
    try:
        fields = Path(path).read_text().split()
        return (int(fields[0]) + int(fields[1])) / 1e9
    except (OSError, ValueError, IndexError):
        return time.thread_time()


def stage_saturation(utilisation: float, wait: float, service: float) -> float:
    """utilisation * (1 + wait / service); the utilisation alone without a service time."""
    utilisation = min(max(utilisation, 0.0), 1.0)
    if service <= 0:
        return utilisation
    return utilisation * (1.0 + max(wait, 0.0) / service)


def lower_quartile(values: list[float]) -> float:
    """The value a quarter of the way up the sorted values (the only one, for one)."""
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=4, method="inclusive")[0]


def ema(previous: float | None, value: float, weight: float) -> float:
    """An exponential moving average step (the first value starts it)."""
    return value if previous is None else previous + weight * (value - previous)


class BestRate:
    """The best rate seen, a stage's capacity as it has shown it: rises a fifth of the way to
    each higher rate (one lucky interval must not set it), decays with a half-life (a stage that
    got slower, a noisy neighbour, is believed in minutes)."""

    def __init__(self, half_life_s: float = BEST_RATE_HALF_LIFE_S, rise: float = 0.2) -> None:
        self.value = 0.0
        self._half_life_s, self._rise = half_life_s, rise
        self._at = 0.0

    def update(self, rate: float, now: float) -> float:
        if not self.value:
            self.value = rate
        else:
            self.value *= 0.5 ** (max(now - self._at, 0.0) / self._half_life_s)
            if rate > self.value:
                self.value += self._rise * (rate - self.value)
        self._at = now
        return self.value


@dataclass(frozen=True, slots=True)
class LoopSample:
    """The event loop over one sampling interval."""

    seconds: float  # the interval
    busy_seconds: float  # the loop thread's CPU time plus run-queue wait in it
    wait: float | None  # lower-quartile seconds a callback queued in it waited (None: no probe)


@dataclass(frozen=True, slots=True)
class EngineCounters:
    """One model version's inference workers, as counted since they started."""

    key: tuple[str, str]  # (model, version)
    workers: int
    busy_seconds: float  # in model calls, running batches included
    batch_seconds: float  # the finished batches' seconds
    rows: int  # the finished batches' rows
    queued_batches: float  # queued rows / max batch size, now


@dataclass(slots=True)
class _EngineState:
    at: float
    counters: EngineCounters
    best: BestRate
    efficiency: float = 1.0  # until batches say otherwise, a busy worker is a full one


class SaturationMeter:
    """Turns successive samples into each stage's reading for the interval between them."""

    def __init__(self) -> None:
        self._loop_best = BestRate()
        self._engines: dict[tuple[str, str], _EngineState] = {}
        # The workers' busy seconds over the last `inference_stage` interval: the GIL time the
        # loop stage adds to its own (`loop_stage(..., workers_busy=...)`).
        self.workers_busy_seconds = 0.0

    def loop_stage(
        self, loop: LoopSample, answered: int, now: float, *, workers_busy: float = 0.0
    ) -> float:
        """The event loop's reading; `answered`: predictions answered in the interval;
        `workers_busy`: the inference threads' busy seconds in it (the GIL is theirs too)."""
        if loop.seconds <= 0 or loop.busy_seconds <= 0 or not answered:
            return stage_saturation(loop.busy_seconds / loop.seconds if loop.seconds else 0, 0, 0)
        gil_seconds = min(loop.busy_seconds + workers_busy, loop.seconds)
        rate = answered / gil_seconds  # requests per second the process's GIL was taken
        best = (
            self._loop_best.update(rate, now)
            if answered >= _MIN_LOOP_REQUESTS or not self._loop_best.value
            else self._loop_best.value
        )
        utilisation = answered / loop.seconds / max(best, rate)
        return stage_saturation(utilisation, loop.wait or 0.0, loop.busy_seconds / answered)

    def inference_stage(self, engines: list[EngineCounters], now: float) -> float:
        """The busiest model's reading (0 without one, or on its first sample)."""
        reading, live = 0.0, {}
        self.workers_busy_seconds = 0.0
        for counters in engines:
            state = self._engines.get(counters.key)
            if state is None or counters.workers <= 0:
                live[counters.key] = _EngineState(now, counters, BestRate())
                continue
            live[counters.key] = state
            if now <= state.at:
                continue
            batch_seconds = counters.batch_seconds - state.counters.batch_seconds
            if batch_seconds > 0:
                rate = (counters.rows - state.counters.rows) / batch_seconds
                state.efficiency = rate / state.best.update(rate, now) if rate > 0 else 0.0
            busy_seconds = counters.busy_seconds - state.counters.busy_seconds
            self.workers_busy_seconds += max(busy_seconds, 0.0)
            busy = busy_seconds / ((now - state.at) * counters.workers)
            queued = counters.queued_batches / counters.workers
            reading = max(reading, stage_saturation(busy * state.efficiency, queued, 1.0))
            state.at, state.counters = now, counters
        self._engines = live  # retired versions drop out
        return reading


class LoopMeter:
    """Measures the event loop it is made on: its thread's busy time, and the wait of a callback
    queued now (`probe`, a few times per sample). Nothing per request; made and read on the
    loop, by the sampling task."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._at = time.perf_counter()
        self._busy = thread_busy_seconds()
        self._waits: list[float] = []

    def probe(self) -> None:
        self._loop.call_soon(self._probed, time.perf_counter())

    def _probed(self, queued_at: float) -> None:
        self._waits.append(time.perf_counter() - queued_at)

    def read(self) -> LoopSample:
        """The interval since the last read. The lower quartile of the waits: one slow callback
        (a /metrics scrape, a garbage collection) or a burst of answers must not read as a
        queue; a queue that stands through the interval does."""
        if threading.get_ident() != self._thread:
            raise RuntimeError("LoopMeter.read must run on its event loop's thread")
        now, busy = time.perf_counter(), thread_busy_seconds()
        waits, self._waits = self._waits, []
        sample = LoopSample(
            seconds=now - self._at,
            busy_seconds=busy - self._busy,
            wait=lower_quartile(waits) if waits else None,
        )
        self._at, self._busy = now, busy
        return sample
