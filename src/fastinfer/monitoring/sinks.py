"""Where the prediction log's records go: rotating JSONL files or PostgreSQL.

A sink's `write` runs in a worker thread, one batch at a time, never on the event loop; it
raises on failure and the log keeps the batch to try again. Records are dicts with a `type`:
"prediction" (request_id, row, time, model, version, input, output, latency_ms) or "feedback"
(request_id, row, time, model, version, outcome, prediction, correct, abs_error).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from pathlib import Path
from typing import IO, Any, Protocol

import orjson

Record = dict[str, Any]


class Sink(Protocol):
    def write(self, records: list[Record]) -> None: ...

    def close(self) -> None: ...


class JsonlSink:
    """One file per server process, `predictions-<host>-<pid>.jsonl`, rotated by size.

    A process appends to its own file (no interleaving between processes); a full file is
    renamed with a sequence number and the oldest rotated files of the directory are deleted
    beyond `backups`, so the directory holds at most (backups + processes) x max_bytes.

    Each batch is flushed to the kernel (it survives the process being killed); with `fsync`
    it is also fsync'ed, and so is the directory when a file is created, so it survives a crash
    of the machine (as far as the storage honours fsync).
    """

    def __init__(
        self, directory: Path, *, max_bytes: int, backups: int, fsync: bool = False
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.backups = backups
        self.fsync = fsync
        directory.mkdir(parents=True, exist_ok=True)
        self._stem = f"predictions-{socket.gethostname()}-{os.getpid()}"
        self.path = directory / f"{self._stem}.jsonl"
        self._file: IO[bytes] | None = None
        self._size = 0
        self._rotations = 0
        self._lock = threading.Lock()

    def write(self, records: list[Record]) -> None:
        data = b"".join(orjson.dumps(r, option=_ORJSON_OPTIONS) + b"\n" for r in records)
        with self._lock:
            handle = self._open()
            if self._size and self._size + len(data) > self.max_bytes:
                self._rotate()
                handle = self._open()
            handle.write(data)
            handle.flush()
            if self.fsync:
                os.fsync(handle.fileno())
            self._size += len(data)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def _open(self) -> IO[bytes]:
        if self._file is None:
            self._file = self.path.open("ab")
            self._size = self._file.tell()
            if self.fsync and self._size == 0:  # a new name (or a rotation's rename) to persist
                descriptor = os.open(self.directory, os.O_RDONLY)
                try:
                    os.fsync(descriptor)
                finally:
                    os.close(descriptor)
        return self._file

    def _rotate(self) -> None:
        assert self._file is not None
        self._file.close()
        self._file = None
        self._rotations += 1
        target = self.directory / f"{self._stem}.{self._rotations:06d}.jsonl"
        self.path.rename(target)
        rotated = sorted(
            (p for p in self.directory.glob("predictions-*.*.jsonl")),
            key=lambda p: p.stat().st_mtime_ns,
        )
        for old in rotated[: max(0, len(rotated) - self.backups)]:
            with contextlib.suppress(FileNotFoundError):  # another process pruned it
                old.unlink()


_ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS

PREDICTIONS_TABLE = "fastinfer_predictions"
FEEDBACK_TABLE = "fastinfer_feedback"
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {PREDICTIONS_TABLE} (
    id bigserial PRIMARY KEY,
    request_id text NOT NULL,
    row_index integer NOT NULL,
    time timestamptz NOT NULL,
    model text NOT NULL,
    version text NOT NULL,
    input jsonb NOT NULL,
    output jsonb NOT NULL,
    latency_ms double precision
);
CREATE INDEX IF NOT EXISTS {PREDICTIONS_TABLE}_request ON {PREDICTIONS_TABLE} (request_id);
CREATE INDEX IF NOT EXISTS {PREDICTIONS_TABLE}_time ON {PREDICTIONS_TABLE} (model, time);
CREATE TABLE IF NOT EXISTS {FEEDBACK_TABLE} (
    id bigserial PRIMARY KEY,
    request_id text NOT NULL,
    row_index integer NOT NULL,
    time timestamptz NOT NULL,
    model text NOT NULL,
    version text NOT NULL,
    outcome jsonb,
    prediction jsonb,
    correct boolean,
    abs_error double precision
);
CREATE INDEX IF NOT EXISTS {FEEDBACK_TABLE}_request ON {FEEDBACK_TABLE} (request_id);
"""
_PREDICTION_COLUMNS = "request_id, row_index, time, model, version, input, output, latency_ms"
_FEEDBACK_COLUMNS = (
    "request_id, row_index, time, model, version, outcome, prediction, correct, abs_error"
)


class PostgresSink:
    """Batches go in with COPY, one transaction per batch; the tables are created on first use
    (under an advisory lock: every server process may try at once)."""

    def __init__(self, dsn: str) -> None:
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RuntimeError(
                "the postgres prediction log needs psycopg (the postgres extra): "
                "pip install 'psycopg[binary]'"
            ) from exc
        self._psycopg = psycopg
        self._dsn = dsn
        self._connection: Any = None
        self._lock = threading.Lock()

    def write(self, records: list[Record]) -> None:
        predictions = [r for r in records if r["type"] == "prediction"]
        feedback = [r for r in records if r["type"] == "feedback"]
        with self._lock:
            connection = self._connect()
            try:
                with connection.transaction(), connection.cursor() as cursor:
                    if predictions:
                        copy_sql = f"COPY {PREDICTIONS_TABLE} ({_PREDICTION_COLUMNS}) FROM STDIN"
                        with cursor.copy(copy_sql) as copy:
                            for r in predictions:
                                copy.write_row(_prediction_row(r))
                    if feedback:
                        copy_sql = f"COPY {FEEDBACK_TABLE} ({_FEEDBACK_COLUMNS}) FROM STDIN"
                        with cursor.copy(copy_sql) as copy:
                            for r in feedback:
                                copy.write_row(_feedback_row(r))
            except self._psycopg.OperationalError:
                self._drop_connection()  # reconnect for the retry
                raise

    def close(self) -> None:
        with self._lock:
            self._drop_connection()

    def _connect(self) -> Any:
        if self._connection is None or self._connection.closed:
            connection = self._psycopg.connect(self._dsn, connect_timeout=5)
            try:
                with connection.transaction(), connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_xact_lock(hashtext('fastinfer_schema'))")
                    cursor.execute(_SCHEMA)
            except Exception:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    def _drop_connection(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None


def _json(value: Any) -> str:
    return orjson.dumps(value, option=_ORJSON_OPTIONS).decode()


def _prediction_row(r: Record) -> tuple[Any, ...]:
    return (
        r["request_id"],
        r["row"],
        r["time"],
        r["model"],
        r["version"],
        _json(r["input"]),
        _json(r["output"]),
        r.get("latency_ms"),
    )


def _feedback_row(r: Record) -> tuple[Any, ...]:
    return (
        r["request_id"],
        r["row"],
        r["time"],
        r["model"],
        r["version"],
        _json(r["outcome"]),
        _json(r.get("prediction")),
        r.get("correct"),
        r.get("abs_error"),
    )
