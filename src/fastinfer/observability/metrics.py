"""Prometheus metrics, correct across the worker processes of one server.

With several server processes, prometheus_client's multiprocess mode keeps each process's values
in memory-mapped files in one directory (`PROMETHEUS_MULTIPROC_DIR`, made by `serve` before the
workers fork and before prometheus_client is imported: it picks its storage at import), and a
scrape of any worker adds them up. A lone in-process app (tests, embedding) uses a registry of
its own.

Per request the hot path does one counter increment and one histogram observation; queue and
in-flight gauges are sampled a few times a second instead of updated per request.

Saturation, for autoscaling on load rather than CPU: `fastinfer_saturation` is how close the
pod is to the most it can serve, at whichever stage saturates first (the event loop's parsing,
validation and encoding, or a model's inference workers; `saturation` has the arithmetic). 1.0
means the pod serves as fast as it can; above 1.0 requests wait. Scale out before 1.0, e.g. an
HPA target of 0.7.

This module feeds the metrics (`Metrics`): counts on the hot path, folded in by `flush`, and
gauges set from samples. What is exposed is declared in `metrics_catalogue`; the load gauges'
averages are kept by `metrics_load`; the shared directory and the summed exposition are
`metrics_multiprocess`; the per-request histogram counts `metrics_pending`.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

from fastinfer.context import RequestContext
from fastinfer.observability.metrics_catalogue import (
    BATCH_BUCKETS,
    LATENCY_BUCKETS,
    PREDICTION_FEATURE,
    MetricCatalogue,
)
from fastinfer.observability.metrics_load import LoadGauges
from fastinfer.observability.metrics_multiprocess import (
    MULTIPROC_ENV,
    _WithSaturation,
    multiprocess_exposition,
)
from fastinfer.observability.metrics_pending import PendingHistogram, pending_histogram
from fastinfer.observability.saturation import EngineCounters, LoopSample


@dataclass(frozen=True, slots=True)
class ModelSample:
    """One model version's state, as the sampling task reads it from the registry and engine."""

    name: str
    version: str
    runtime: str
    sha256: str
    serving: bool
    in_flight: int
    load_seconds: float | None = None
    workers: int = 0  # inference workers (0: no engine)
    queued_items: int = 0
    queued_batches: float = 0.0  # queued rows / max batch size
    busy_seconds: float = 0.0  # all workers in model calls so far (running batches included)
    batch_seconds: float = 0.0  # finished batches' seconds so far
    rows_done: int = 0  # rows of the finished batches

    def counters(self) -> EngineCounters:
        """What the saturation meter reads of its engine."""
        return EngineCounters(
            (self.name, self.version),
            self.workers,
            self.busy_seconds,
            self.batch_seconds,
            self.rows_done,
            self.queued_batches,
        )


class Metrics(MetricCatalogue):
    """The service's metrics (declared in `MetricCatalogue`), fed; one per app."""

    def __init__(self) -> None:
        super().__init__()
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        self._load = LoadGauges(self)
        self._answered = 0  # predictions answered since the last sample (the loop's service time)
        self._auth_failures: dict[str, int] = {}
        self._rate_limited: dict[str, int] = {}
        self._info_keys: set[tuple[str, str, str, str]] = set()
        self._requests: dict[tuple[str, str, str, str], int] = {}
        self._latency: dict[tuple[str, ...], PendingHistogram] = {}
        self._batch_rows: dict[tuple[str, ...], PendingHistogram] = {}
        self._inference: dict[tuple[str, ...], PendingHistogram] = {}
        self._queue_wait: dict[tuple[str, ...], PendingHistogram] = {}

    # -- the hot path: plain Python counts, folded into prometheus_client by `flush` ------------
    # An update of a multiprocess metric takes a lock and writes to a memory-mapped file; doing
    # five of them per request cost ~15% of 1-row throughput. Counting here costs ~1 µs.

    def answered(self, context: RequestContext, status: int, elapsed: float) -> None:
        """A RequestObserver: count a prediction that reached a model version."""
        if context.version is not None and context.model is not None:
            self.request(context.model, context.version, context.protocol or "v1", status, elapsed)

    def request(self, model: str, version: str, protocol: str, status: int, seconds: float) -> None:
        key = (model, version, protocol, str(status))
        self._requests[key] = self._requests.get(key, 0) + 1
        pending_histogram(self._latency, (model, protocol), LATENCY_BUCKETS).add(seconds)

    # -- the engine (EngineObserver) --------------------------------------------------------------

    def batch(self, model: str, rows: int, seconds: float, waits: list[float]) -> None:
        pending_histogram(self._batch_rows, (model,), BATCH_BUCKETS).add(rows)
        pending_histogram(self._inference, (model,), LATENCY_BUCKETS).add(seconds)
        queue_wait = pending_histogram(self._queue_wait, (model,), LATENCY_BUCKETS)
        for wait in waits:
            queue_wait.add(wait)

    def auth_failure(self, reason: str) -> None:
        """A 401/403 (counted here: a flood of bad keys must not cost a file write each)."""
        self._auth_failures[reason] = self._auth_failures.get(reason, 0) + 1

    def rate_limit_hit(self, key: str) -> None:
        self._rate_limited[key] = self._rate_limited.get(key, 0) + 1

    def rejected(self, model: str, reason: str) -> None:
        self.rejections.labels(model, reason).inc()  # rare: straight through

    def flush(self) -> None:
        """Fold the counts gathered since the last flush into the metrics (on the event loop)."""
        requests, self._requests = self._requests, {}
        for key, count in requests.items():
            self.requests.labels(*key).inc(count)
            self._answered += count
        failures, self._auth_failures = self._auth_failures, {}
        for reason, count in failures.items():
            self.auth_failures.labels(reason).inc(count)
        limited, self._rate_limited = self._rate_limited, {}
        for name, count in limited.items():
            self.rate_limited.labels(name).inc(count)
        for metric, pending in (
            (self.latency, self._latency),
            (self.batch_rows, self._batch_rows),
            (self.inference, self._inference),
            (self.queue_wait, self._queue_wait),
        ):
            for labels, counts in pending.items():
                counts.fold_into(metric.labels(*labels))
                counts.reset()

    def prediction_log(self, outcome: str, rows: int) -> None:
        self.prediction_log_rows.labels(outcome).inc(rows)  # per batch or drop: not per request

    def accuracy(self, values: dict[tuple[str, str], Any]) -> None:
        """Live accuracy per (model, version), as every process computes it from the index."""
        for (model, version), value in values.items():
            self.feedback_count.labels(model, version).set(value.feedback)
            if value.accuracy is not None:
                self.feedback_accuracy.labels(model, version).set(value.accuracy)
            if value.mean_absolute_error is not None:
                self.feedback_error.labels(model, version).set(value.mean_absolute_error)

    def drift(self, model: str, version: str, report: dict[str, Any]) -> None:
        """One version's drift report (`monitoring.drift.drift_report`) into the gauges."""
        entries = dict(report["features"])
        if report.get("prediction") is not None:
            entries[PREDICTION_FEATURE] = report["prediction"]
        for feature, entry in entries.items():
            if entry["psi"] is not None:
                self.drift_psi.labels(model, version, feature).set(entry["psi"])
            if entry.get("missing_rate") is not None:
                self.drift_missing.labels(model, version, feature).set(entry["missing_rate"])
            self.drift_out_of_range.labels(model, version, feature).set(entry["out_of_range"])

    # -- sampled state ---------------------------------------------------------------------------

    def sample(self, models: list[ModelSample], loop: LoopSample | None = None) -> None:
        """Flush the counts and set the gauges from a sample of every version and of the event
        loop (4 times a second): the caller reads the registry, engine and loop, so metrics
        imports none of them."""
        self.flush()
        in_flight: dict[str, int] = {}
        queued: dict[str, int] = {}
        for model in models:
            in_flight[model.name] = in_flight.get(model.name, 0) + model.in_flight
            if model.workers:  # has an engine
                queued[model.name] = queued.get(model.name, 0) + model.queued_items
        for name, count in in_flight.items():
            self.in_flight.labels(name).set(count)
        for name, count in queued.items():
            self.queued.labels(name).set(count)
        answered, self._answered = self._answered, 0
        self._load.sample([m.counters() for m in models if m.workers], loop, answered)
        keys = {(m.name, m.version, m.runtime, m.sha256) for m in models if m.serving}
        for key in self._info_keys - keys:
            with contextlib.suppress(KeyError):
                self.model_info.remove(*key)
        for key in keys - self._info_keys:
            self.model_info.labels(*key).set(1)
        self._info_keys = keys
        for model in models:
            if model.serving and model.load_seconds is not None:
                self.load_seconds.labels(model.name, model.version).set(model.load_seconds)

    # -- exposition --------------------------------------------------------------------------------

    def exposition(self) -> bytes:
        from prometheus_client import CollectorRegistry, generate_latest

        if self.multiprocess:
            return multiprocess_exposition()
        registry = CollectorRegistry()
        registry.register(_WithSaturation(self.registry))
        return bytes(generate_latest(registry))
