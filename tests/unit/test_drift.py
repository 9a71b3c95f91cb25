"""Drift (PSI) of live traffic against reference statistics: fastinfer.monitoring.drift."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from fastinfer.model.spec import InputField
from fastinfer.monitoring.drift import (
    DriftWindow,
    drift_report,
    merge_snapshots,
    psi,
)
from fastinfer.monitoring.drift_store import DriftStore
from fastinfer.monitoring.reference import (
    bin_counts,
    read_reference,
    reference_statistics,
    write_reference,
)

COLOURS = ["red", "green", "blue"]
FIELDS = [
    InputField(name="age", type="number"),
    InputField(name="fare", type="number"),
    InputField(name="colour", type="string", allowed=COLOURS),
]
T0 = 1_700_000_000.0


class Clock:
    """An injected clock: tests move time instead of sleeping."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def sample(
    rng: np.random.Generator,
    n: int,
    *,
    age_shift: float = 0.0,
    colour_p: tuple[float, float, float] = (0.5, 0.3, 0.2),
) -> tuple[list[dict[str, Any]], list[Any]]:
    """Rows as a server sees them, and classifier predictions (which depend on fare only)."""
    age = rng.normal(40, 10, n) + age_shift
    fare = rng.lognormal(3, 0.8, n)
    colour = rng.choice(COLOURS, size=n, p=list(colour_p))
    rows = [
        {"age": float(a), "fare": float(f), "colour": str(c)}
        for a, f, c in zip(age, fare, colour, strict=True)
    ]
    predictions = [
        {"label": label, "probabilities": {"cheap": 0.5, "dear": 0.5}}
        for label in np.where(fare > 20, "dear", "cheap").tolist()
    ]
    return rows, predictions


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    rows, predictions = sample(np.random.default_rng(1), 5000)
    labels = [p["label"] for p in predictions]
    stats = reference_statistics(pd.DataFrame(rows), FIELDS, labels)
    path = tmp_path_factory.mktemp("ref") / "reference.json"
    write_reference(path, stats)  # the real file format, infinite edges as strings
    return read_reference(path)


def feed(window: DriftWindow, rows: list[dict[str, Any]], predictions: list[Any]) -> None:
    for i in range(0, len(rows), 100):  # request by request
        window.observe(rows[i : i + 100], predictions[i : i + 100])


def report_of(reference: dict[str, Any], *windows: DriftWindow) -> dict[str, Any]:
    merged = merge_snapshots([w.snapshot() for w in windows], now=T0, window_s=3600)
    return drift_report(reference, merged)


def test_same_distribution_is_stable_and_only_shifted_age_drifts(
    reference: dict[str, Any],
) -> None:
    rng = np.random.default_rng(2)
    window = DriftWindow(reference, clock=Clock())
    feed(window, *sample(rng, 2000))
    report = report_of(reference, window)
    assert report["rows"] == 2000 and report["drifted"] == []
    for name, feature in report["features"].items():
        assert feature["psi"] < 0.1, name
        assert feature["rows"] == 2000 and feature["missing"] == 0
    assert report["prediction"]["psi"] < 0.1
    json.dumps(report, allow_nan=False)  # plain JSON

    shifted = DriftWindow(reference, clock=Clock())
    feed(shifted, *sample(rng, 2000, age_shift=15))
    report = report_of(reference, shifted)
    assert report["drifted"] == ["age"]
    assert report["features"]["age"]["psi"] > 0.2 and report["features"]["age"]["drifted"]
    assert report["features"]["age"]["out_of_range"] > 0  # older than anyone in the reference
    assert report["features"]["fare"]["psi"] < 0.1
    assert report["features"]["colour"]["psi"] < 0.1
    assert report["prediction"]["psi"] < 0.1 and not report["prediction"]["drifted"]


def test_categorical_shift_drifts(reference: dict[str, Any]) -> None:
    window = DriftWindow(reference, clock=Clock())
    feed(window, *sample(np.random.default_rng(3), 2000, colour_p=(0.2, 0.3, 0.5)))
    report = report_of(reference, window)
    assert report["drifted"] == ["colour"]
    assert report["features"]["colour"]["psi"] > 0.2
    assert report["features"]["colour"]["out_of_range"] == 0


def test_unseen_out_of_range_and_missing_are_counted() -> None:
    frame = pd.DataFrame({"x": [float(i) for i in range(100)], "colour": ["red", "blue"] * 50})
    fields = [InputField(name="x", type="number"), InputField(name="colour", type="string")]
    reference = reference_statistics(frame, fields, ["yes", "no"] * 50)
    window = DriftWindow(reference, clock=Clock())
    rows: list[Any] = [
        {"x": 50, "colour": "red"},
        {"x": -5.0, "colour": "purple"},  # below the minimum; a new category
        {"x": None, "colour": None},
        {"x": math.nan},  # colour left out: missing
        {"x": math.inf, "colour": "red", "extra": 1},  # fields unknown to the reference: ignored
        {"x": "abc", "colour": 3},  # not a number: missing; 3 is the category "3": unseen
        {"x": "7", "colour": "blue"},  # a numeric string is a number, as in the reference
        {"x": 150.0, "colour": True},  # above the maximum; "true" is unseen
        "not a row",  # every feature missing
    ]
    predictions = [{"label": "yes"}, "no", None, {"label": "maybe"}, "yes"]  # 4 short: missing
    window.observe(rows, predictions)
    window.observe([{"x": 1.0, "colour": "blue"}], None)  # no predictions: missing
    bucket = window.snapshot()["buckets"][0]
    x, colour, prediction = bucket["features"]["x"], bucket["features"]["colour"], None
    assert set(bucket["features"]) == {"x", "colour"} and bucket["rows"] == 10
    assert x["counts"] == bin_counts(reference["features"]["x"]["bins"], [50, -5, 7, 150, 1])
    assert (x["missing"], x["out_of_range"], x["rows"]) == (5, 2, 10)
    assert colour["counts"] == {"blue": 2, "red": 2}
    assert (colour["unseen"], colour["out_of_range"]) == (3, 3)
    assert (colour["missing"], colour["rows"]) == (3, 10)
    prediction = bucket["prediction"]
    assert prediction["counts"] == {"no": 1, "yes": 2}
    assert (prediction["unseen"], prediction["missing"], prediction["rows"]) == (1, 6, 10)

    merged = merge_snapshots([window.snapshot()], now=T0, window_s=60)
    report = drift_report(reference, merged, min_rows=3)
    assert report["features"]["x"]["missing_rate"] == 0.5
    assert report["features"]["x"]["reference_missing_rate"] == 0.0
    assert report["features"]["colour"]["psi"] > 0.2  # 3 of 7 values never seen before
    assert drift_report(reference, merged)["features"]["x"]["psi"] is None  # < 30 rows
    assert not drift_report(reference, merged)["features"]["x"]["drifted"]


def test_numeric_predictions_use_the_value() -> None:
    frame = pd.DataFrame({"x": [float(i) for i in range(100)]})
    reference = reference_statistics(frame, [InputField(name="x", type="number")], list(range(100)))
    window = DriftWindow(reference, clock=Clock())
    window.observe([{"x": 1.0}] * 3, [{"value": 3.0}, 500.0, {"other": 1}])
    prediction = window.snapshot()["buckets"][0]["prediction"]
    assert sum(prediction["counts"]) == 2 and prediction["out_of_range"] == 1
    assert prediction["missing"] == 1


def test_old_buckets_age_out(reference: dict[str, Any]) -> None:
    clock = Clock()
    window = DriftWindow(reference, window_s=600, bucket_s=60, clock=clock)
    rows, predictions = sample(np.random.default_rng(4), 150)
    window.observe(rows[:100], predictions[:100])
    window.fold()
    clock.now += 300
    window.observe(rows[100:], predictions[100:])
    snapshot = window.snapshot()
    assert [b["rows"] for b in snapshot["buckets"]] == [100, 50]
    assert merge_snapshots([snapshot], now=clock.now, window_s=600)["rows"] == 150
    assert merge_snapshots([snapshot], now=clock.now, window_s=200)["rows"] == 50
    assert merge_snapshots([snapshot], now=clock.now + 700, window_s=600)["rows"] == 0

    clock.now += 360  # the first bucket is now older than the window
    assert [b["rows"] for b in window.snapshot()["buckets"]] == [50]
    clock.now += 601
    assert window.snapshot()["buckets"] == []
    merged = merge_snapshots([window.snapshot()], now=clock.now, window_s=600)
    report = drift_report(reference, merged)
    assert report["rows"] == 0 and report["features"]["age"]["psi"] is None


def test_pending_rows_are_capped_and_observe_never_raises(reference: dict[str, Any]) -> None:
    window = DriftWindow(reference, max_pending_rows=10, clock=Clock())
    rows, predictions = sample(np.random.default_rng(5), 20)
    window.observe(rows[:7], predictions[:7])
    window.observe(rows[7:14], predictions[7:14])  # 3 fit
    window.observe(rows[14:], None)  # none fit
    assert window.skipped_rows == 10
    window.fold()
    window.observe([42, "x", {"age": [1, 2]}], [1, 2, 3, 4])  # type: ignore[list-item]
    window.observe([], [])
    merged = merge_snapshots([window.snapshot()], now=T0, window_s=3600)
    assert (merged["rows"], merged["skipped_rows"]) == (13, 10)
    assert merged["features"]["age"]["missing"] == 3
    assert merged["prediction"]["unseen"] == 3  # 1, 2, 3 are not labels


def test_merged_processes_equal_one_window_fed_everything(reference: dict[str, Any]) -> None:
    rows, predictions = sample(np.random.default_rng(6), 1000, age_shift=5)
    one, first, second = (DriftWindow(reference, clock=Clock()) for _ in range(3))
    feed(one, rows, predictions)
    feed(first, rows[:400], predictions[:400])
    feed(second, rows[400:], predictions[400:])
    single = merge_snapshots([one.snapshot()], now=T0, window_s=3600)
    both = merge_snapshots([first.snapshot(), second.snapshot()], now=T0, window_s=3600)
    assert both["processes"] == 2
    assert {**both, "processes": 1} == single
    assert drift_report(reference, both) == drift_report(reference, single)


def test_store_round_trip_stays_inside_its_directory(
    reference: dict[str, Any], tmp_path: Path
) -> None:
    window = DriftWindow(reference, clock=Clock())
    feed(window, *sample(np.random.default_rng(7), 100))
    snapshot = window.snapshot()
    root = tmp_path / "drift"
    store = DriftStore(root)
    store.write("../x", "1/../../y", snapshot)
    store.write("../x", "1/../../y", snapshot)  # replaced, not added
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].name == f"{os.getpid()}.json"
    assert files[0].resolve().is_relative_to(root.resolve())
    assert store.read("../x", "1/../../y") == [snapshot]
    assert store.read("../x", "other") == []
    for hostile in (".", "..", ""):
        with pytest.raises(ValueError, match="file name"):
            store.write(hostile, "1", snapshot)

    (files[0].parent / "999.json").write_bytes(orjson.dumps(snapshot)[:50])  # half written
    assert store.read("../x", "1/../../y") == [snapshot]
    store.prune(max_age_s=3600)
    assert len(list(files[0].parent.iterdir())) == 2
    os.utime(files[0].parent / "999.json", (T0 - 7200, T0 - 7200))  # a dead process
    store.prune(max_age_s=3600)
    assert [p.name for p in files[0].parent.iterdir()] == [files[0].name]


def test_psi_on_small_vectors() -> None:
    # (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5) = 0.25 ln 2 + 0.25 ln 1.5
    assert psi([50, 50], [25, 75]) == pytest.approx(0.25 * math.log(3))
    # An empty expected bin is clamped to epsilon: (0.9 - 1) ln 0.9 + (0.1 - 1e-4) ln(0.1 / 1e-4)
    expected = -0.1 * math.log(0.9) + (0.1 - 1e-4) * math.log(1000)
    assert psi([100, 0], [90, 10]) == pytest.approx(expected)
    assert psi([1, 2, 3], [10, 20, 30]) == pytest.approx(0.0)
    assert psi([1, 2], [0, 0]) == 0.0
    with pytest.raises(ValueError, match="bins"):
        psi([1, 2], [1, 2, 3])
