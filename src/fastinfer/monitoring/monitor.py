"""What a server process watches about its predictions: the prediction log, feedback and
live accuracy (and drift), behind one object the data plane calls once per prediction.

`observe` is on the request path and only appends references; everything else runs in the
monitor's own task or a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastinfer.config import Settings
from fastinfer.errors import FeedbackDisabled, InvalidInput, PredictionNotFound
from fastinfer.monitoring.drift import DriftWindow, drift_report, merge_snapshots
from fastinfer.monitoring.drift_store import DriftStore
from fastinfer.monitoring.feedback import FeedbackIndex, OutcomeError, OutputLabels, score
from fastinfer.monitoring.prediction_log import PredictionLog
from fastinfer.monitoring.reference import REFERENCE_FILENAME, read_reference
from fastinfer.monitoring.sinks import JsonlSink, PostgresSink, Sink
from fastinfer.observability.logging import get_logger
from fastinfer.observability.metrics import Metrics
from fastinfer.repository.served import ServedModel
from fastinfer.runtimes import Prediction, Row

log = get_logger("fastinfer.monitoring")
FEEDBACK_INDEX = "feedback.sqlite"
WATCH_INTERVAL_S = 5.0  # gauges: live accuracy and drift
FOLD_INTERVAL_S = 1.0  # drift: bin new rows, publish this process's window
# With no new rows, the windows are republished (and old files pruned) only this often: enough
# to keep this process's files younger than `prune`'s age limit (drift_window_s + 60 s).
REFRESH_INTERVAL_S = 30.0


def make_sink(settings: Settings) -> Sink | None:
    if settings.prediction_log == "jsonl":
        return JsonlSink(
            settings.prediction_log_dir,
            max_bytes=settings.prediction_log_max_bytes,
            backups=settings.prediction_log_backups,
            fsync=settings.prediction_log_durability == "durable",
        )
    if settings.prediction_log == "postgres":
        if settings.prediction_log_dsn is None:
            raise ValueError("FASTINFER_PREDICTION_LOG=postgres needs FASTINFER_PREDICTION_LOG_DSN")
        return PostgresSink(settings.prediction_log_dsn.get_secret_value())
    return None


class Monitor:
    """The monitoring of one server process."""

    def __init__(
        self,
        settings: Settings,
        run_dir: Path,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.run_dir = run_dir
        self.metrics = metrics
        self._task: asyncio.Task[None] | None = None
        self.drift_store = DriftStore(run_dir / "drift")
        # id(model) -> the version and its drift window (None: no reference statistics); the
        # entry holds the model, so its id is not reused while it is here.
        self._windows: dict[int, tuple[ServedModel, DriftWindow | None]] = {}
        self._reports_at = 0.0
        self._observed = 0  # calls to `observe`, so far ...
        self._shared = (-1, 0.0)  # ... and when the windows were last published: (count, time)
        self.log: PredictionLog | None = None
        self.feedback: FeedbackIndex | None = None
        sink = make_sink(settings)
        if sink is not None:
            self.feedback = FeedbackIndex(
                run_dir / FEEDBACK_INDEX, window_s=settings.feedback_window_s
            )
            self.log = PredictionLog(
                sink,
                sample_rate=settings.prediction_log_sample_rate,
                redact=settings.prediction_log_redact,
                capacity=settings.prediction_log_buffer,
                batch_rows=settings.prediction_log_batch,
                flush_s=settings.prediction_log_flush_s,
                on_batch=self.feedback.add_predictions,
                count=metrics.prediction_log if metrics is not None else None,
                durable=settings.prediction_log_durability == "durable",
            )

    def observe(
        self,
        model: ServedModel,
        rows: list[Row],
        predictions: list[Prediction],
        request_id: str,
        started: float | None,
    ) -> asyncio.Future[None] | None:
        """One request's predictions (request path: cheap, never raises). With a durable
        prediction log, a future the request awaits before it is answered (see PredictionLog)."""
        written = None
        if self.log is not None:
            latency = None if started is None else round((time.perf_counter() - started) * 1e3, 3)
            written = self.log.offer(
                model.name, model.version, request_id, rows, predictions, latency
            )
        entry = self._windows.get(id(model))
        if entry is None:
            entry = self._windows[id(model)] = (model, self._drift_window(model))
        window = entry[1]
        if window is not None:
            window.observe(rows, predictions)
        self._observed += 1
        return written

    def _drift_window(self, model: ServedModel) -> DriftWindow | None:
        """The version's drift window, if it ships reference statistics (read once)."""
        path = model.directory.root / REFERENCE_FILENAME
        if not path.is_file():
            return None
        try:
            reference = read_reference(path)
        except Exception as exc:  # a bad file costs drift, not predictions
            log.warning("reference_unreadable", model=model.label, error=str(exc)[:200])
            return None
        window_s = self.settings.drift_window_s
        return DriftWindow(reference, window_s=window_s, bucket_s=max(1.0, window_s / 60))

    async def start(self) -> None:
        if self.log is not None:
            self.log.start()
        self._task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        """Live accuracy into the metrics, every few seconds (off the request path). The
        windows are published each second that brought new rows, else every
        `REFRESH_INTERVAL_S` (an idle process wakes no thread for them)."""
        while True:
            await asyncio.sleep(FOLD_INTERVAL_S)
            try:
                now = time.monotonic()
                count, shared_at = self._shared
                if count != self._observed or now - shared_at >= REFRESH_INTERVAL_S:
                    self._shared = (self._observed, now)
                    await asyncio.to_thread(self._share_windows)
                if now - self._reports_at >= WATCH_INTERVAL_S:
                    self._reports_at = now
                    await asyncio.to_thread(self._update_gauges)
            except Exception:  # monitoring must never take the service down
                log.exception("monitoring_update_failed")

    def _share_windows(self) -> None:
        """Bin this process's new rows and publish its windows for the other processes."""
        for key, (model, window) in list(self._windows.items()):
            if window is not None:
                self.drift_store.write(model.name, model.version, window.snapshot())
            if not model.serving and model.in_flight == 0:  # retired (its file ages out)
                del self._windows[key]
        self.drift_store.prune(self.settings.drift_window_s + 60)

    def _update_gauges(self) -> None:
        if self.metrics is None:
            return
        self.metrics.accuracy(self.accuracy())
        for model, window in list(self._windows.values()):
            if window is not None:
                self.metrics.drift(model.name, model.version, self._report(model, window))

    def _report(self, model: ServedModel, window: DriftWindow) -> dict[str, Any]:
        snapshots = self.drift_store.read(model.name, model.version)
        merged = merge_snapshots(snapshots, now=time.time(), window_s=window.window_s)
        return drift_report(window.reference, merged)

    async def drift(self, model: ServedModel) -> dict[str, Any] | None:
        """The version's drift over the window, from every server process; None: no reference."""
        entry = self._windows.get(id(model))
        if entry is None:
            entry = self._windows[id(model)] = (model, self._drift_window(model))
        model, window = entry
        if window is None:
            return None
        return await asyncio.to_thread(self._publish_and_report, model, window)

    def _publish_and_report(self, model: ServedModel, window: DriftWindow) -> dict[str, Any]:
        self.drift_store.write(model.name, model.version, window.snapshot())  # the latest rows
        return self._report(model, window)

    async def stop(self, timeout: float = 10.0) -> None:
        """Flush the prediction log (after the last request was answered)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.log is not None:
            await self.log.close(timeout)
        if self.feedback is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.feedback.close)

    async def give_feedback(
        self,
        name: str,
        request_id: str,
        row: int,
        outcome: Any,
        labels_of: Callable[[str], OutputLabels],
    ) -> dict[str, Any]:
        """Join `outcome` to the logged prediction and record it; the joined pair.

        `labels_of(version)` gives what that version may answer (outcomes may name a class).
        """
        if self.feedback is None or self.log is None:
            raise FeedbackDisabled(
                "feedback is joined to logged predictions: turn on the prediction log "
                "(FASTINFER_PREDICTION_LOG=jsonl or postgres)",
                details={"setting": "FASTINFER_PREDICTION_LOG"},
            )
        index = self.feedback
        logged = await asyncio.to_thread(index.lookup, name, request_id, row)
        if logged is None:
            raise PredictionNotFound(
                f"no logged prediction of model {name!r} with request id {request_id!r} "
                f"(row {row}): it was not sampled, is older than the feedback window, or is "
                "not written yet (the log writes about once a second)",
                details={"request_id": request_id, "row": row},
                headers={"Retry-After": "1"},
            )
        try:
            result = score(logged.output, outcome, labels_of(logged.version))
        except OutcomeError as exc:
            details: dict[str, Any] = {"field": "outcome", "problem": str(exc)}
            known = labels_of(logged.version).known
            if known is not None:
                details["allowed"] = list(known)
            raise InvalidInput(str(exc), details=[details]) from None
        await asyncio.to_thread(index.add_feedback, name, logged.version, request_id, row, result)
        record = {
            "type": "feedback",
            "request_id": request_id,
            "row": row,
            "model": name,
            "version": logged.version,
            "outcome": outcome,
            "prediction": logged.output,
            "correct": result.correct,
            "abs_error": result.abs_error,
        }
        self.log.offer_feedback(record)
        return {k: v for k, v in record.items() if k != "type"}

    def accuracy(self) -> dict[tuple[str, str], Any]:
        """Live accuracy per (model, version) over the feedback window (reads the index)."""
        if self.feedback is None:
            return {}
        return self.feedback.accuracy()
