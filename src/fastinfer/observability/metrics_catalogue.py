"""Every Prometheus metric the service exposes, declared in one place.

Apart from `metrics.Metrics` (how the metrics are fed: counted on the hot path, sampled a few
times a second) because the catalogue is what an operator reads: names, help texts, labels and
how each gauge adds up over the server processes (`multiprocess_mode`). docs/observability.md
follows its order.

prometheus_client is imported when a catalogue is made, not with this module: it picks its
storage (multiprocess or not) at import, after `serve` has set `PROMETHEUS_MULTIPROC_DIR`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
PREDICTION_FEATURE = "__prediction__"  # the drift gauges' label for the prediction
# How a gauge adds up over the server processes (prometheus_client's multiprocess modes).
Mode = Literal["livesum", "livemax", "livemostrecent"]
_VERSION = ("model", "version")
_FEATURE = ("model", "version", "feature")


class MetricCatalogue:
    """The service's metrics, each declared in one statement, in one registry of their own."""

    def __init__(self) -> None:
        """Declares every metric (a long function on purpose: the catalogue reads best in one
        place)."""
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        registry = self.registry = CollectorRegistry(auto_describe=True)

        def counter(name: str, help_text: str, labels: Sequence[str] = ()) -> Counter:
            return Counter(name, help_text, labels, registry=registry)

        def gauge(name: str, help_text: str, labels: Sequence[str], mode: Mode) -> Gauge:
            return Gauge(name, help_text, labels, multiprocess_mode=mode, registry=registry)

        def histogram(
            name: str, help_text: str, labels: Sequence[str], buckets: Sequence[float]
        ) -> Histogram:
            return Histogram(name, help_text, labels, buckets=buckets, registry=registry)

        self.requests = counter(
            "fastinfer_requests",
            "Prediction requests answered, by model, version, protocol and status.",
            ["model", "version", "protocol", "status"],
        )
        self.latency = histogram(
            "fastinfer_request_duration_seconds",
            "Time from a prediction request's arrival to its answer.",
            ["model", "protocol"],
            LATENCY_BUCKETS,
        )
        self.batch_rows = histogram(
            "fastinfer_batch_rows", "Rows in each call to a model.", ["model"], BATCH_BUCKETS
        )
        self.queue_wait = histogram(
            "fastinfer_queue_wait_seconds",
            "Time a request waited in its model's queue (batch delay included).",
            ["model"],
            LATENCY_BUCKETS,
        )
        self.inference = histogram(
            "fastinfer_inference_seconds",
            "Time of each call to a model (one batch).",
            ["model"],
            LATENCY_BUCKETS,
        )
        self.rejections = counter(
            "fastinfer_rejections",
            "Requests shed, expired or abandoned: queue_full, deadline, no_workers (at admission), "
            "timeout (in queue or inference), cancelled (while queued; rows not computed).",
            ["model", "reason"],
        )
        self.in_flight = gauge(
            "fastinfer_in_flight_requests",
            "Requests holding a model version (reading, queued, computing or answering).",
            ["model"],
            "livesum",
        )
        self.queued = gauge(
            "fastinfer_queued_requests",
            "Requests waiting in a model's queue.",
            ["model"],
            "livesum",
        )
        self.load = gauge(
            "fastinfer_load",
            "Each server process's saturation, summed over the processes (the time-averaged "
            "larger of its event loop's and its inference workers' readings).",
            (),
            "livesum",
        )
        self.capacity = gauge(
            "fastinfer_capacity",
            "Server processes (the load at which the service is at capacity).",
            (),
            "livesum",
        )
        self.stage_saturation = gauge(
            "fastinfer_stage_saturation",
            "Saturation of each stage, event_loop or inference, in the server process where it "
            "is highest: which one limits the pod.",
            ["stage"],
            "livemax",
        )
        self.loop_busy = gauge(
            "fastinfer_event_loop_busy_ratio",
            "Share of the time the busiest server process's event loop thread ran or waited "
            "for a CPU (parsing, validating, encoding).",
            (),
            "livemax",
        )
        self.model_info = gauge(
            "fastinfer_model_info",
            "1 for each loaded model version, with its artefact's sha256.",
            ["model", "version", "runtime", "sha256"],
            "livemax",
        )
        self.load_seconds = gauge(
            "fastinfer_model_load_seconds",
            "Seconds a model version took to load and self-test.",
            _VERSION,
            "livemax",
        )
        self.prediction_log_rows = counter(
            "fastinfer_prediction_log_rows",
            "Prediction log rows by outcome: written, dropped_buffer_full, dropped_shutdown "
            "(and failed_writes: batches the sink refused, retried).",
            ["outcome"],
        )
        self.feedback_accuracy = gauge(
            "fastinfer_feedback_accuracy",
            "Share of correct predictions among those given feedback in the feedback window "
            "(classifiers).",
            _VERSION,
            "livemostrecent",
        )
        self.feedback_error = gauge(
            "fastinfer_feedback_mean_absolute_error",
            "Mean absolute error of the predictions given feedback in the window (regressors).",
            _VERSION,
            "livemostrecent",
        )
        self.feedback_count = gauge(
            "fastinfer_feedback_window_predictions",
            "Predictions given feedback in the feedback window.",
            _VERSION,
            "livemostrecent",
        )
        self.drift_psi = gauge(
            "fastinfer_drift_psi",
            "Population stability index of each input feature (and of the prediction, feature "
            '"__prediction__") over the drift window against the reference; > 0.2 is drift.',
            _FEATURE,
            "livemostrecent",
        )
        self.drift_missing = gauge(
            "fastinfer_drift_missing_ratio",
            "Share of missing values of each input feature over the drift window.",
            _FEATURE,
            "livemostrecent",
        )
        self.drift_out_of_range = gauge(
            "fastinfer_drift_out_of_range",
            "Values outside the reference's range (numeric) or categories (categorical) in the "
            "drift window.",
            _FEATURE,
            "livemostrecent",
        )
        self.auth_failures = counter(
            "fastinfer_auth_failures",
            "Requests refused by authentication: missing or invalid key (401), scope or model "
            "not allowed (403).",
            ["reason"],
        )
        self.rate_limited = counter(
            "fastinfer_rate_limited",
            "Requests refused (429) because their API key was over its rate limit.",
            ["key"],
        )
        self.rate_limit = gauge(
            "fastinfer_rate_limit_requests_per_second",
            "Each rate-limited API key's configured rate (the sum of every process's share).",
            ["key"],
            "livesum",
        )
