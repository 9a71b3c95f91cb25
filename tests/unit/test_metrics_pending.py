"""Counts folded into a histogram read exactly as if each value had been observed."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram

from fastinfer.observability.metrics_pending import PendingHistogram

BOUNDS = (0.01, 0.1, 1.0, 10.0)
VALUES = [0.0, 0.01, 0.02, 0.5, 0.5, 1.0, 3.0, 10.5, 99.0]


def _samples(histogram: Histogram) -> list[tuple[str, dict[str, str], float]]:
    return [
        (sample.name, sample.labels, sample.value)
        for family in histogram.collect()
        for sample in family.samples
        if not sample.name.endswith("_created")
    ]


def test_folding_counts_equals_observing_each_value() -> None:
    registry = CollectorRegistry()
    observed = Histogram("observed", "", ["model"], buckets=BOUNDS, registry=registry)
    folded = Histogram("folded", "", ["model"], buckets=BOUNDS, registry=registry)
    pending = PendingHistogram(BOUNDS)
    for value in VALUES:
        observed.labels("m").observe(value)
        pending.add(value)
    pending.fold_into(folded.labels("m"))
    pending.reset()
    pending.fold_into(folded.labels("m"))  # nothing new: changes nothing
    assert [
        (name.replace("observed", "folded"), labels, value)
        for name, labels, value in _samples(observed)
    ] == _samples(folded)
