"""Feedback: the true outcome of a logged prediction, joined to it by request id, and the live
accuracy it adds up to.

Feedback may reach any server process, not the one that made the prediction, so the join
index is shared: a SQLite database in the run directory that every process's prediction log
adds its batches to (off the request path) and that keeps only the feedback window. The
durable record of both sides is the prediction log's sink; this index only serves the join
and the live accuracy, which every process computes alike from the same rows.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from fastinfer.monitoring.reference import category_key
from fastinfer.monitoring.sinks import Record

_SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    model TEXT NOT NULL, request_id TEXT NOT NULL, row INTEGER NOT NULL,
    version TEXT NOT NULL, time REAL NOT NULL, output TEXT NOT NULL,
    PRIMARY KEY (model, request_id, row)
);
CREATE INDEX IF NOT EXISTS predictions_time ON predictions (time);
CREATE TABLE IF NOT EXISTS feedback (
    model TEXT NOT NULL, request_id TEXT NOT NULL, row INTEGER NOT NULL,
    version TEXT NOT NULL, time REAL NOT NULL, correct INTEGER, abs_error REAL,
    PRIMARY KEY (model, request_id, row)
);
CREATE INDEX IF NOT EXISTS feedback_time ON feedback (time);
"""


class OutcomeError(ValueError):
    """The outcome cannot be compared with the prediction (e.g. text for a regressor)."""


@dataclass(frozen=True, slots=True)
class LoggedPrediction:
    version: str
    output: Any
    time: float


@dataclass(frozen=True, slots=True)
class Score:
    correct: bool | None  # classifiers (and other outputs compared for equality)
    abs_error: float | None  # regressors


@dataclass(frozen=True, slots=True)
class Accuracy:
    feedback: int
    accuracy: float | None
    mean_absolute_error: float | None


@dataclass(frozen=True, slots=True)
class OutputLabels:
    """What a classifier version may answer: its `output.labels` mapping (class → label) and
    the labels themselves (None: unknown, e.g. a version no longer loaded)."""

    mapping: Mapping[str, str] | None = None
    known: Sequence[str] | None = None


def score(output: Any, outcome: Any, labels: OutputLabels | None = None) -> Score:
    """How the prediction `output` did against the true `outcome`.

    A classifier's outcome may be given as its label or as the class the label names in
    `output.labels` (1 or "1" for "survived"); one the model cannot answer is refused (it would
    count as wrong and skew the live accuracy). A regressor's outcome is a number.
    """
    labels = labels or OutputLabels()
    if isinstance(output, dict) and "label" in output:
        key = category_key(outcome)
        if labels.mapping and key is not None and key in labels.mapping:
            key = labels.mapping[key]
        if labels.known is not None and key not in labels.known:
            allowed = ", ".join(repr(label) for label in labels.known)
            classes = ", ".join(repr(c) for c in labels.mapping or {})
            also = f" (or their classes {classes})" if classes else ""
            raise OutcomeError(
                f"the outcome {outcome!r} is not a label of this model; allowed: {allowed}{also}"
            )
        return Score(correct=key == category_key(output["label"]), abs_error=None)
    if isinstance(output, dict) and "value" in output:
        if isinstance(outcome, bool) or not isinstance(outcome, int | float):
            raise OutcomeError("the outcome of a regressor must be a number")
        if not math.isfinite(outcome):
            raise OutcomeError("the outcome must be a finite number")
        return Score(correct=None, abs_error=abs(float(outcome) - float(output["value"])))
    return Score(correct=outcome == output, abs_error=None)


class FeedbackIndex:
    """Recent predictions and their feedback, shared by the server processes through SQLite."""

    def __init__(self, path: Path, *, window_s: float) -> None:
        self.path = path
        self.window_s = window_s
        self._local = threading.local()  # one connection per thread: sqlite3's rule
        self._pruned_at = 0.0

    def _db(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=OFF")  # an index of memory-backed state
            connection.executescript(_SCHEMA)
            self._local.connection = connection
        return connection

    def add_predictions(self, records: list[Record]) -> None:
        """Remember a batch of prediction-log records (feedback records are skipped)."""
        now = time.time()
        rows = [
            (r["model"], r["request_id"], r["row"], r["version"], now, orjson.dumps(r["output"]))
            for r in records
            if r["type"] == "prediction"
        ]
        if not rows:
            return
        db = self._db()
        with _transaction(db):
            db.executemany("INSERT OR REPLACE INTO predictions VALUES (?, ?, ?, ?, ?, ?)", rows)
        self._prune(now)

    def lookup(self, model: str, request_id: str, row: int) -> LoggedPrediction | None:
        found = (
            self._db()
            .execute(
                "SELECT version, output, time FROM predictions "
                "WHERE model = ? AND request_id = ? AND row = ?",
                (model, request_id, row),
            )
            .fetchone()
        )
        if found is None:
            return None
        return LoggedPrediction(found[0], orjson.loads(found[1]), found[2])

    def add_feedback(
        self, model: str, version: str, request_id: str, row: int, result: Score
    ) -> None:
        """Record (or replace: a client may retry) the feedback on one prediction."""
        correct = None if result.correct is None else int(result.correct)
        db = self._db()
        with _transaction(db):
            db.execute(
                "INSERT OR REPLACE INTO feedback VALUES (?, ?, ?, ?, ?, ?, ?)",
                (model, request_id, row, version, time.time(), correct, result.abs_error),
            )

    def accuracy(self) -> dict[tuple[str, str], Accuracy]:
        """Per (model, version): feedback in the window, accuracy, mean absolute error."""
        since = time.time() - self.window_s
        found = (
            self._db()
            .execute(
                "SELECT model, version, COUNT(*), AVG(correct), AVG(abs_error) FROM feedback "
                "WHERE time >= ? GROUP BY model, version",
                (since,),
            )
            .fetchall()
        )
        return {(m, v): Accuracy(n, acc, mae) for m, v, n, acc, mae in found}

    def _prune(self, now: float) -> None:
        if now - self._pruned_at < min(60.0, self.window_s / 10):
            return
        self._pruned_at = now
        db = self._db()
        with _transaction(db):
            db.execute("DELETE FROM predictions WHERE time < ?", (now - self.window_s,))
            db.execute("DELETE FROM feedback WHERE time < ?", (now - self.window_s,))

    def close(self) -> None:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT (autocommit connections: explicit, short write locks)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
