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
from typing import Any

import orjson
import structlog
from structlog.typing import Processor

_QUEUE_SIZE = 10_000
_listener: logging.handlers.QueueListener | None = None


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


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time (test runners and daemons swap it)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def _orjson_dumps(value: Any, **_: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def configure_logging(level: str = "info", fmt: str = "auto", *, background: bool = True) -> None:
    """Route structlog and the standard library (uvicorn included) through one pipeline.

    `background=False` writes synchronously and starts no thread: for a process about to fork.
    """
    global _listener  # noqa: PLW0603 - one logging pipeline per process
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer(serializer=_orjson_dumps)
        if use_json
        else structlog.dev.ConsoleRenderer()
    )
    final: list[Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if use_json:
        final.append(structlog.processors.format_exc_info)
    final.append(renderer)
    formatter = structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=final)
    numeric_level = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        cache_logger_on_first_use=False,
    )

    stream = _StderrHandler()
    stream.setFormatter(formatter)
    if _listener is not None:
        _listener.stop()
        _listener = None
    root = logging.getLogger()
    if background:
        records: queue.Queue[logging.LogRecord] = queue.Queue(maxsize=_QUEUE_SIZE)
        _listener = logging.handlers.QueueListener(records, stream, respect_handler_level=False)
        _listener.start()
        root.handlers = [_DroppingQueueHandler(records)]
    else:
        root.handlers = [stream]
    root.setLevel(numeric_level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # fastinfer writes its own access log


def flush_logging() -> None:
    """Write out every queued record (at shutdown, so the last lines are not lost)."""
    global _listener  # noqa: PLW0603
    if _listener is not None:
        _listener.stop()
        _listener = None


def dropped_log_records() -> int:
    return _DroppingQueueHandler.dropped


atexit.register(flush_logging)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
