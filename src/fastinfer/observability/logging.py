"""Structured logs: JSON in production, readable on a terminal, never blocking a request.

Records are handed to a bounded queue and written by a background thread, so a slow stderr
(a full pipe, a stalled log shipper) can not stall the event loop. When the queue is full,
records are dropped and counted rather than waited for.
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import queue
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from structlog.typing import EventDict, Processor

_QUEUE_SIZE = 10_000
_writer: _BatchWriter | None = None


class _DroppingQueueHandler(logging.handlers.QueueHandler):
    """Hands records to the writer thread as they are; drops them when the queue is full."""

    dropped = 0

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record  # the writer thread formats; structlog's event dict must survive intact

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            type(self).dropped += 1


class _BatchWriter:
    """The writer thread: drains whatever is queued, formats it, and writes it in one call.

    One write and one wake-up per burst rather than per line keeps the writer's share of the
    GIL small when every request logs a line. A thread of its own, not a
    `logging.handlers.QueueListener`: the listener's loop, the part batching changes, is private.
    """

    _BURST = 512
    _STOP = object()

    def __init__(self, records: queue.Queue[Any], handler: logging.Handler) -> None:
        self._records = records
        self._handler = handler
        self._thread = threading.Thread(target=self._run, name="fastinfer-log-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Write out what is queued, then end the thread."""
        if self._thread.is_alive():
            self._records.put(self._STOP)  # waits for room: the thread is draining
            self._thread.join()

    def _run(self) -> None:
        done = False
        while not done:
            burst = [self._records.get()]
            while len(burst) < self._BURST:
                try:
                    burst.append(self._records.get_nowait())
                except queue.Empty:
                    break
            lines: list[str] = []
            for record in burst:
                if record is self._STOP:
                    done = True
                    continue
                try:
                    lines.append(self._handler.format(record))
                except Exception:
                    self._handler.handleError(record)
            if lines:
                stream = sys.stderr
                stream.write("\n".join(lines) + "\n")
                stream.flush()


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time (test runners and daemons swap it)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def _timestamp(_logger: Any, _method: str, event: EventDict) -> EventDict:
    """ISO-8601 UTC time of the record, added in the writer thread rather than by the caller."""
    if "timestamp" not in event:
        record = event.get("_record")
        created = record.created if record is not None else time.time()
        event["timestamp"] = _iso_utc(created)
    return event


class _JsonFastFormatter(structlog.stdlib.ProcessorFormatter):
    """JSON lines; hot-path records (plain dicts of JSON values) skip the processor chain."""

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "_hot", False):
            fields: dict[str, Any] = dict(record.msg)  # type: ignore[arg-type]
            fields["timestamp"] = _iso_utc(record.created)
            return orjson.dumps(fields, default=str).decode()
        return super().format(record)


def _iso_utc(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat().replace("+00:00", "Z")


def emit_record(logger_name: str, level: int, event: str, fields: dict[str, Any]) -> None:
    """Log a line for the hot path: a few microseconds, against ~45 for a structlog call.

    The caller's dict is handed over as the event (no processor chain runs in the caller);
    the writer thread stamps and renders it like any other line.
    """
    logger = logging.getLogger(logger_name)
    if not logger.isEnabledFor(level):
        return
    fields["event"] = event
    fields["level"] = logging.getLevelName(level).lower()
    fields["logger"] = logger_name
    record = logger.makeRecord(logger_name, level, "", 0, fields, (), None)
    record._logger = logger  # marks the record as already structured for ProcessorFormatter
    record._name = fields["level"]
    record._hot = True
    logger.handle(record)


def _orjson_dumps(value: Any, **_: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def configure_logging(level: str = "info", fmt: str = "auto", *, background: bool = True) -> None:
    """Route structlog and the standard library (uvicorn included) through one pipeline.

    `background=False` writes synchronously and starts no thread: for a process about to fork.
    """
    global _writer  # noqa: PLW0603 - one logging pipeline per process
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    numeric_level = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        cache_logger_on_first_use=False,
    )

    # Records carry no thread or process names here; skipping them makes each record cheaper.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    stream = _StderrHandler()
    stream.setFormatter(_formatter(use_json))
    if _writer is not None:
        _writer.stop()
        _writer = None
    root = logging.getLogger()
    if background:
        records: queue.Queue[Any] = queue.Queue(maxsize=_QUEUE_SIZE)
        _writer = _BatchWriter(records, stream)
        _writer.start()
        root.handlers = [_DroppingQueueHandler(records)]
    else:
        root.handlers = [stream]
    root.setLevel(numeric_level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # fastinfer writes its own access log


def _formatter(use_json: bool) -> logging.Formatter:
    """Renders in the writer thread, which also stamps the time: the caller pays little."""
    renderer: Processor = (
        structlog.processors.JSONRenderer(serializer=_orjson_dumps)
        if use_json
        else structlog.dev.ConsoleRenderer()
    )
    final: list[Processor] = [
        _timestamp,
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
    ]
    if use_json:
        final.append(structlog.processors.format_exc_info)
    final.append(renderer)
    formatter_type = _JsonFastFormatter if use_json else structlog.stdlib.ProcessorFormatter
    return formatter_type(
        foreign_pre_chain=[structlog.stdlib.add_log_level, structlog.stdlib.add_logger_name],
        processors=final,
    )


def flush_logging() -> None:
    """Write out every queued record (at shutdown, so the last lines are not lost)."""
    global _writer  # noqa: PLW0603
    if _writer is not None:
        _writer.stop()
        _writer = None


atexit.register(flush_logging)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
