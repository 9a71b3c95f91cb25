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

This module is what is measured (`Metrics`); the shared directory and the summed exposition are
`metrics_multiprocess`, the per-request histogram counts folded in by `flush` `metrics_pending`.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from typing import Any

from fastinfer.context import RequestContext
from fastinfer.observability.metrics_multiprocess import (
    MULTIPROC_ENV,
    _WithSaturation,
    multiprocess_exposition,
)
from fastinfer.observability.metrics_pending import PendingHistogram, pending_histogram
from fastinfer.observability.saturation import (
    EngineCounters,
    LoopSample,
    SaturationMeter,
    ema,
)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
PREDICTION_FEATURE = "__prediction__"  # the drift gauges' label for the prediction
_EMA = 0.1  # weight of each 0.25 s sample: the average spans a few seconds


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


class Metrics:
    """The service's metrics; one per app."""

    def __init__(self) -> None:
        """Declares every metric, one statement each (a long function on purpose: the
        catalogue reads best in one place, and docs/observability.md follows its order)."""
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        registry = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "fastinfer_requests",
            "Prediction requests answered, by model, version, protocol and status.",
            ["model", "version", "protocol", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "fastinfer_request_duration_seconds",
            "Time from a prediction request's arrival to its answer.",
            ["model", "protocol"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_rows = Histogram(
            "fastinfer_batch_rows",
            "Rows in each call to a model.",
            ["model"],
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.queue_wait = Histogram(
            "fastinfer_queue_wait_seconds",
            "Time a request waited in its model's queue (batch delay included).",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.inference = Histogram(
            "fastinfer_inference_seconds",
            "Time of each call to a model (one batch).",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.rejections = Counter(
            "fastinfer_rejections",
            "Requests shed, expired or abandoned: queue_full, deadline, no_workers (at admission), "
            "timeout (in queue or inference), cancelled (while queued; rows not computed).",
            ["model", "reason"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "fastinfer_in_flight_requests",
            "Requests holding a model version (reading, queued, computing or answering).",
            ["model"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.queued = Gauge(
            "fastinfer_queued_requests",
            "Requests waiting in a model's queue.",
            ["model"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.load = Gauge(
            "fastinfer_load",
            "Each server process's saturation, summed over the processes (the time-averaged "
            "larger of its event loop's and its inference workers' readings).",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.capacity = Gauge(
            "fastinfer_capacity",
            "Server processes (the load at which the service is at capacity).",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.stage_saturation = Gauge(
            "fastinfer_stage_saturation",
            "Saturation of each stage, event_loop or inference, in the server process where it "
            "is highest: which one limits the pod.",
            ["stage"],
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.loop_busy = Gauge(
            "fastinfer_event_loop_busy_ratio",
            "Share of the time the busiest server process's event loop thread ran or waited "
            "for a CPU (parsing, validating, encoding).",
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.model_info = Gauge(
            "fastinfer_model_info",
            "1 for each loaded model version, with its artefact's sha256.",
            ["model", "version", "runtime", "sha256"],
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.load_seconds = Gauge(
            "fastinfer_model_load_seconds",
            "Seconds a model version took to load and self-test.",
            ["model", "version"],
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.prediction_log_rows = Counter(
            "fastinfer_prediction_log_rows",
            "Prediction log rows by outcome: written, dropped_buffer_full, dropped_shutdown "
            "(and failed_writes: batches the sink refused, retried).",
            ["outcome"],
            registry=registry,
        )
        self.feedback_accuracy = Gauge(
            "fastinfer_feedback_accuracy",
            "Share of correct predictions among those given feedback in the feedback window "
            "(classifiers).",
            ["model", "version"],
            multiprocess_mode="livemostrecent",
            registry=registry,
        )
        self.feedback_error = Gauge(
            "fastinfer_feedback_mean_absolute_error",
            "Mean absolute error of the predictions given feedback in the window (regressors).",
            ["model", "version"],
            multiprocess_mode="livemostrecent",
            registry=registry,
        )
        self.feedback_count = Gauge(
            "fastinfer_feedback_window_predictions",
            "Predictions given feedback in the feedback window.",
            ["model", "version"],
            multiprocess_mode="livemostrecent",
            registry=registry,
        )
        self.drift_psi = Gauge(
            "fastinfer_drift_psi",
            "Population stability index of each input feature (and of the prediction, feature "
            '"__prediction__") over the drift window against the reference; > 0.2 is drift.',
            ["model", "version", "feature"],
            multiprocess_mode="livemostrecent",
            registry=registry,
        )
        self.drift_missing = Gauge(
            "fastinfer_drift_missing_ratio",
            "Share of missing values of each input feature over the drift window.",
            ["model", "version", "feature"],
            multiprocess_mode="livemostrecent",
            registry=registry,
        )
        self.drift_out_of_range = Gauge(
            "fastinfer_drift_out_of_range",
            "Values outside the reference's range (numeric) or categories (categorical) in the "
            "drift window.",
            ["model", "version", "feature"],
            multiprocess_mode="livemostrecent",
            registry=registry,
        )
        self.auth_failures = Counter(
            "fastinfer_auth_failures",
            "Requests refused by authentication: missing or invalid key (401), scope or model "
            "not allowed (403).",
            ["reason"],
            registry=registry,
        )
        self.rate_limited = Counter(
            "fastinfer_rate_limited",
            "Requests refused (429) because their API key was over its rate limit.",
            ["key"],
            registry=registry,
        )
        self.rate_limit = Gauge(
            "fastinfer_rate_limit_requests_per_second",
            "Each rate-limited API key's configured rate (the sum of every process's share).",
            ["key"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        self._average_load: float | None = None
        self._stages: dict[str, float] = {}
        self._loop_busy: float | None = None
        self._saturation = SaturationMeter()
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
        pending_histogram(self._latency, (model, protocol), _LATENCY_BUCKETS).add(seconds)

    # -- the engine (EngineObserver) --------------------------------------------------------------

    def batch(self, model: str, rows: int, seconds: float, waits: list[float]) -> None:
        pending_histogram(self._batch_rows, (model,), _BATCH_BUCKETS).add(rows)
        pending_histogram(self._inference, (model,), _LATENCY_BUCKETS).add(seconds)
        queue_wait = pending_histogram(self._queue_wait, (model,), _LATENCY_BUCKETS)
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
        self._sample_saturation(models, loop)
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

    def _sample_saturation(self, models: list[ModelSample], loop: LoopSample | None) -> None:
        """This process's saturation: the larger of its event loop's and its busiest model's
        readings over the last interval, averaged over a few seconds."""
        answered, self._answered = self._answered, 0
        now = time.monotonic()
        engines = [
            EngineCounters(
                (m.name, m.version),
                m.workers,
                m.busy_seconds,
                m.batch_seconds,
                m.rows_done,
                m.queued_batches,
            )
            for m in models
            if m.workers
        ]
        stages = {"inference": self._saturation.inference_stage(engines, now)}
        if loop is not None and loop.seconds > 0:
            stages["event_loop"] = self._saturation.loop_stage(loop, answered, now)
            busy = min(loop.busy_seconds / loop.seconds, 1.0)
            self._loop_busy = ema(self._loop_busy, busy, _EMA)
            self.loop_busy.set(self._loop_busy)
        for stage, value in stages.items():
            average = self._stages[stage] = ema(self._stages.get(stage), value, _EMA)
            self.stage_saturation.labels(stage).set(average)
        self._average_load = ema(self._average_load, max(stages.values()), _EMA)
        self.load.set(self._average_load)
        self.capacity.set(1)

    # -- exposition --------------------------------------------------------------------------------

    def exposition(self) -> bytes:
        from prometheus_client import CollectorRegistry, generate_latest

        if self.multiprocess:
            return multiprocess_exposition()
        registry = CollectorRegistry()
        registry.register(_WithSaturation(self.registry))
        return bytes(generate_latest(registry))
