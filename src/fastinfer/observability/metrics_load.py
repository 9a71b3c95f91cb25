"""This process's saturation in the load gauges: the larger of its event loop's and its busiest
model's readings, averaged over a few seconds.

Apart from `metrics.Metrics` because it keeps state of its own between samples (the averages
and the meters of `saturation`) and feeds only the gauges an autoscaler reads:
`fastinfer_load` and `fastinfer_capacity` (whose ratio over the processes is
`fastinfer_saturation`), `fastinfer_stage_saturation` and `fastinfer_event_loop_busy_ratio`.
"""

from __future__ import annotations

import math
import time

from fastinfer.observability.metrics_catalogue import MetricCatalogue
from fastinfer.observability.saturation import EngineCounters, LoopSample, SaturationMeter, ema

# The averages' time constant: a sample 0.25 s after the last weighs 0.1, one a second after
# (the sampler slows down while the loop is idle) 0.34, so an idle pod's reading falls as fast.
_AVERAGE_SECONDS = 2.4


class LoadGauges:
    """Turns each sample of the engines and the event loop into the load gauges."""

    def __init__(self, catalogue: MetricCatalogue) -> None:
        self._metrics = catalogue
        self._average_load: float | None = None
        self._stages: dict[str, float] = {}
        self._loop_busy: float | None = None
        self._saturation = SaturationMeter()
        self._sampled_at: float | None = None

    def sample(self, engines: list[EngineCounters], loop: LoopSample | None, answered: int) -> None:
        """`engines`: every version with inference workers; `answered`: predictions answered
        since the last sample (the loop's service time)."""
        now = time.monotonic()
        if loop is not None and loop.seconds > 0:
            since = loop.seconds  # the interval the sample covers
        else:
            since = now - self._sampled_at if self._sampled_at is not None else 0.25
        self._sampled_at = now
        weight = 1.0 - math.exp(-max(since, 0.0) / _AVERAGE_SECONDS)
        stages = {"inference": self._saturation.inference_stage(engines, now)}
        if loop is not None and loop.seconds > 0:
            stages["event_loop"] = self._saturation.loop_stage(
                loop, answered, now, workers_busy=self._saturation.workers_busy_seconds
            )
            busy = min(loop.busy_seconds / loop.seconds, 1.0)
            self._loop_busy = ema(self._loop_busy, busy, weight)
            self._metrics.loop_busy.set(self._loop_busy)
        for stage, value in stages.items():
            average = self._stages[stage] = ema(self._stages.get(stage), value, weight)
            self._metrics.stage_saturation.labels(stage).set(average)
        self._average_load = ema(self._average_load, max(stages.values()), weight)
        self._metrics.load.set(self._average_load)
        self._metrics.capacity.set(1)
