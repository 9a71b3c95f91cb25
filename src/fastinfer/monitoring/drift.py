"""Per-feature drift (PSI) of live traffic against a model version's reference statistics.

Design:

- Off the request path. `DriftWindow.observe` only appends references to the request's rows to a
  pending list, under a lock held for a few instructions: no binning, no allocation per row, so
  monitoring adds nothing measurable to latency. `fold` (called from a background task, e.g. every
  few seconds) bins the pending rows column by column with numpy into the current time bucket. If
  folding stalls, the pending list is capped and further rows are counted as skipped, never kept:
  memory stays bounded and `observe` never blocks or raises.
- Same bins as the reference. Numeric values go through `reference.bin_counts` with the
  reference's edges, categorical values through `reference.category_key`, so live counts and
  reference counts are comparable bin for bin.
- Sliding window of time buckets, so that old traffic ages out without keeping rows.
- One snapshot file per process. A server runs several worker processes, each seeing only its
  share of the traffic, and they share no memory. Each process writes its own window as a
  `drift_store.DriftStore` file (one writer per file, atomic replace: no locks); any process, or
  a separate health process, reads all files of a model version and adds them up with
  `merge_snapshots`. Files of dead processes stop being refreshed and are removed by `prune`.

This module is the arithmetic (windows, merging, PSI, the report); the files are `drift_store`.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from fastinfer.monitoring.reference import bin_counts, category_key

SNAPSHOT_FORMAT = 1
Tally = dict[str, Any]  # JSON form of one feature's counts, see `_Column.to_json`


class _Column:
    """How one reference feature (or the prediction) is counted: bins or categories."""

    def __init__(self, entry: dict[str, Any]) -> None:
        self.kind: str = entry["kind"]
        if self.kind == "numeric":
            self.edges: list[float] = [float(e) for e in entry["bins"]]
            self.low: float | None = entry.get("min")
            self.high: float | None = entry.get("max")
            width = len(self.edges) - 1
        else:
            self.keys: list[str] = sorted(entry["counts"])
            self.index = {key: i for i, key in enumerate(self.keys)}
            width = len(self.keys) + 1  # the last slot counts unseen categories
        self.width = width

    def empty(self) -> list[int]:
        """Counts, then missing, out_of_range and rows."""
        return [0] * (self.width + 3)

    def add(self, into: list[int], values: list[Any]) -> None:
        if self.kind == "numeric":
            numbers = _as_floats(values)
            finite = numbers[np.isfinite(numbers)]
            counts = bin_counts(self.edges, finite.tolist())
            if self.low is None or self.high is None:
                outside = int(finite.size)  # the reference had no finite value at all
            else:
                outside = int(np.count_nonzero((finite < self.low) | (finite > self.high)))
            missing = len(values) - int(finite.size)
        else:
            slots: list[int] = []
            missing, unseen, index = 0, self.width - 1, self.index
            for value in values:
                key = value if value.__class__ is str else category_key(value)
                if key is None:
                    missing += 1
                else:
                    slots.append(index.get(key, unseen))
            counts = np.bincount(np.asarray(slots, dtype=np.intp), minlength=self.width).tolist()
            outside = counts[-1]
        for i, count in enumerate(counts):
            into[i] += count
        into[-3] += missing
        into[-2] += outside
        into[-1] += len(values)

    def to_json(self, tally: list[int]) -> Tally:
        counts = tally[: self.width]
        out: Tally = {"kind": self.kind, "counts": counts, "missing": tally[-3]}
        out.update(out_of_range=tally[-2], rows=tally[-1])
        if self.kind == "categorical":
            out["counts"] = {key: n for key, n in zip(self.keys, counts, strict=False) if n}
            out["unseen"] = counts[-1]
        return out


def _as_floats(values: list[Any]) -> npt.NDArray[np.float64]:
    """Floats, NaN for what is not a number (as the reference's `pd.to_numeric(coerce)`)."""
    try:
        array = np.array(values, dtype=float)
        if array.shape == (len(values),):
            return array
    except (TypeError, ValueError, OverflowError):
        pass
    return np.array([_as_float(v) for v in values], dtype=float)


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return math.nan


def _prediction_value(prediction: Any) -> Any:
    if isinstance(prediction, dict):
        if "label" in prediction:
            return prediction["label"]
        if "value" in prediction:
            return prediction["value"]
    return prediction


class DriftWindow:
    """Live counts of one model version's inputs and predictions over a sliding time window."""

    def __init__(
        self,
        reference: dict[str, Any],
        *,
        window_s: float = 3600.0,
        bucket_s: float = 60.0,
        max_pending_rows: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if window_s <= 0 or bucket_s <= 0:
            raise ValueError("window_s and bucket_s must be positive")
        self.window_s = float(window_s)
        self.bucket_s = float(bucket_s)
        self.max_pending_rows = max_pending_rows
        self.skipped_rows = 0
        self.reference = reference
        self._clock = clock
        self._features = {name: _Column(e) for name, e in reference.get("features", {}).items()}
        entry = reference.get("prediction")
        self._prediction = _Column(entry) if isinstance(entry, dict) else None
        self._pending: list[tuple[list[dict[str, Any]], list[Any] | None]] = []
        self._pending_rows = 0
        self._skipped_folded = 0
        self._pending_lock = threading.Lock()
        self._fold_lock = threading.Lock()
        # start -> {"rows", "skipped", "features": {name: tally}, "prediction": tally | None}
        self._buckets: dict[float, dict[str, Any]] = {}

    def observe(self, rows: list[dict[str, Any]], predictions: list[Any] | None) -> None:
        """Queue a request's rows (by reference: do not mutate them afterwards) for `fold`.

        `predictions` is None when there are none (counted as missing), else one per row.
        """
        count = len(rows)
        if not count:
            return
        with self._pending_lock:
            room = self.max_pending_rows - self._pending_rows
            if count > room:
                self.skipped_rows += count - max(room, 0)
                if room <= 0:
                    return
                rows = rows[:room]
                predictions = None if predictions is None else predictions[:room]
                count = room
            self._pending.append((rows, predictions))
            self._pending_rows += count

    def fold(self) -> None:
        """Bin the pending rows into the current bucket; forget buckets older than the window.

        Rows are stamped with the time of the fold, so call it at least every `bucket_s`.
        """
        with self._pending_lock:
            batches, self._pending, self._pending_rows = self._pending, [], 0
            skipped, self._skipped_folded = (
                self.skipped_rows - self._skipped_folded,
                self.skipped_rows,
            )
        with self._fold_lock:
            now = self._clock()
            if batches or skipped:
                start = math.floor(now / self.bucket_s) * self.bucket_s
                bucket = self._buckets.get(start)
                if bucket is None:
                    bucket = self._buckets[start] = {
                        "rows": 0,
                        "skipped": 0,
                        "features": {n: c.empty() for n, c in self._features.items()},
                        "prediction": self._prediction.empty() if self._prediction else None,
                    }
                self._add(bucket, batches)
                bucket["skipped"] += skipped
            cutoff = now - self.window_s
            for start in [s for s in self._buckets if s < cutoff]:
                del self._buckets[start]

    def _add(
        self, bucket: dict[str, Any], batches: list[tuple[list[dict[str, Any]], list[Any] | None]]
    ) -> None:
        rows = [row if isinstance(row, dict) else {} for batch, _ in batches for row in batch]
        bucket["rows"] += len(rows)
        for name, column in self._features.items():
            column.add(bucket["features"][name], [row.get(name) for row in rows])
        if self._prediction is not None:
            values: list[Any] = []
            for batch, predictions in batches:
                given = [] if predictions is None else predictions[: len(batch)]
                values.extend(_prediction_value(p) for p in given)
                values.extend([None] * (len(batch) - len(given)))
            self._prediction.add(bucket["prediction"], values)

    def snapshot(self) -> dict[str, Any]:
        """The window's buckets as plain JSON data, for `DriftStore.write` / `merge_snapshots`."""
        self.fold()
        with self._fold_lock:
            buckets = [
                {
                    "start": start,
                    "rows": b["rows"],
                    "skipped": b["skipped"],
                    "features": {n: c.to_json(b["features"][n]) for n, c in self._features.items()},
                    "prediction": self._prediction.to_json(b["prediction"])
                    if self._prediction
                    else None,
                }
                for start, b in sorted(self._buckets.items())
            ]
        return {
            "format": SNAPSHOT_FORMAT,
            "pid": os.getpid(),
            "window_s": self.window_s,
            "bucket_s": self.bucket_s,
            "written_at": self._clock(),
            "skipped_rows": self.skipped_rows,
            "buckets": buckets,
        }


def merge_snapshots(
    snapshots: Iterable[dict[str, Any]], *, now: float, window_s: float
) -> dict[str, Any]:
    """Sum the buckets (of any number of processes) that start within `[now - window_s, now]`.

    Snapshots of another format are skipped; tallies of different shapes (snapshots made against
    different references) raise ValueError.
    """
    merged: dict[str, Any] = {
        "now": now,
        "window_s": window_s,
        "rows": 0,
        "skipped_rows": 0,
        "processes": 0,
        "features": {},
        "prediction": None,
    }
    for snapshot in snapshots:
        if not isinstance(snapshot, dict) or snapshot.get("format") != SNAPSHOT_FORMAT:
            continue
        merged["processes"] += 1
        for bucket in snapshot.get("buckets", []):
            if not now - window_s <= bucket["start"] <= now:
                continue
            merged["rows"] += bucket["rows"]
            merged["skipped_rows"] += bucket.get("skipped", 0)
            for name, tally in bucket["features"].items():
                merged["features"][name] = _add_tally(merged["features"].get(name), tally)
            if bucket.get("prediction") is not None:
                merged["prediction"] = _add_tally(merged["prediction"], bucket["prediction"])
    return merged


def _add_tally(total: Tally | None, tally: Tally) -> Tally:
    if total is None:
        return orjson.loads(orjson.dumps(tally))  # type: ignore[no-any-return]  # a deep copy
    if total["kind"] != tally["kind"] or (
        total["kind"] == "numeric" and len(total["counts"]) != len(tally["counts"])
    ):
        raise ValueError("snapshots of different references cannot be merged")
    if total["kind"] == "numeric":
        total["counts"] = [a + b for a, b in zip(total["counts"], tally["counts"], strict=True)]
    else:
        for key, count in tally["counts"].items():
            total["counts"][key] = total["counts"].get(key, 0) + count
        total["unseen"] += tally["unseen"]
    for key in ("missing", "out_of_range", "rows"):
        total[key] += tally[key]
    return total


def psi(expected: Sequence[float], actual: Sequence[float], *, epsilon: float = 1e-4) -> float:
    """Population stability index of two count vectors: sum((a - e) * ln(a / e)) over bins.

    Proportions below `epsilon` are raised to it, so an empty bin on one side is a large but
    finite term. 0.0 when `actual` is all zeros (nothing to compare yet).
    """
    if len(expected) != len(actual):
        raise ValueError(f"{len(expected)} expected bins but {len(actual)} actual bins")
    e = np.asarray(expected, dtype=float)
    a = np.asarray(actual, dtype=float)
    if a.sum() <= 0:
        return 0.0
    if e.sum() <= 0:
        raise ValueError("the expected counts are all zero")
    e = np.maximum(e / e.sum(), epsilon)
    a = np.maximum(a / a.sum(), epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


def drift_report(
    reference: dict[str, Any], merged: dict[str, Any], *, threshold: float = 0.2, min_rows: int = 30
) -> dict[str, Any]:
    """Per-feature PSI of `merged` (from `merge_snapshots`) against `reference`, as JSON data.

    Missing values are left out of the PSI and reported as rates; PSI is null (and the feature
    not drifted) below `min_rows` non-missing live values.
    """

    def judge(entry: dict[str, Any], tally: Tally | None) -> dict[str, Any]:
        column = _Column(entry)
        live = tally or column.to_json(column.empty())
        if column.kind == "numeric":
            expected, actual = list(entry["counts"]), list(live["counts"])
            if len(expected) != len(actual):
                raise ValueError("live counts were binned against a different reference")
        else:
            expected = [entry["counts"][k] for k in column.keys] + [0]
            actual = [live["counts"].get(k, 0) for k in column.keys] + [live["unseen"]]
        value = psi(expected, actual) if sum(actual) >= min_rows and sum(expected) > 0 else None
        rows, missing, reference_rows = live["rows"], live["missing"], sum(expected)
        reference_rows += entry["missing"]
        return {
            "kind": column.kind,
            "psi": value,
            "rows": rows,
            "missing": missing,
            "missing_rate": missing / rows if rows else None,
            "reference_missing_rate": entry["missing"] / reference_rows if reference_rows else None,
            "out_of_range": live["out_of_range"],
            "drifted": value is not None and value > threshold,
        }

    features = {
        name: judge(entry, merged.get("features", {}).get(name))
        for name, entry in reference.get("features", {}).items()
    }
    prediction_entry = reference.get("prediction")
    return {
        "rows": merged.get("rows", 0),
        "skipped_rows": merged.get("skipped_rows", 0),
        "window_s": merged.get("window_s"),
        "threshold": threshold,
        "features": features,
        "prediction": judge(prediction_entry, merged.get("prediction"))
        if isinstance(prediction_entry, dict)
        else None,
        "drifted": [name for name, f in features.items() if f["drifted"]],
    }
