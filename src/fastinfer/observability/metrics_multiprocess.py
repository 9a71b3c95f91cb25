"""The multiprocess plumbing of the metrics: the shared directory and the summed exposition.

With several server processes, prometheus_client's multiprocess mode keeps each process's values
in memory-mapped files in one directory (`PROMETHEUS_MULTIPROC_DIR`); the supervisor makes and
removes it and marks dead workers, and any process (a worker, or the health process) exposes the
sum. Kept apart from `metrics.Metrics` (what is measured) because this is process lifecycle and
exposition, used by the supervisor and the health process without a `Metrics` of their own.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # of the exposition


def prepare_multiprocess_dir() -> Path | None:
    """Make (or empty) the directory the worker processes share; None if already set by the
    operator, whose directory is then emptied of old values. Call before forking workers."""
    configured = os.environ.get(MULTIPROC_ENV)
    if configured:
        directory = Path(configured)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
        return None
    # memory-backed; mkdtemp makes a private folder in it
    shm = Path("/dev/shm")  # noqa: S108  # nosec B108
    base = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    directory = Path(tempfile.mkdtemp(prefix="fastinfer-metrics-", dir=base))
    os.environ[MULTIPROC_ENV] = str(directory)
    return directory


def remove_multiprocess_dir(directory: Path | None) -> None:
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)


def mark_process_dead(pid: int) -> None:
    """Drop a dead worker's live gauges (its counters stay: they are history)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        with contextlib.suppress(OSError):
            multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def multiprocess_exposition() -> bytes:
    """Every server process's metrics, summed, from the shared directory (for any process of
    the server: a worker, or the health process serving /metrics on the health port)."""
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    source = CollectorRegistry()
    multiprocess.MultiProcessCollector(source)  # type: ignore[no-untyped-call]
    registry = CollectorRegistry()
    registry.register(_WithSaturation(source))
    return bytes(generate_latest(registry))


class _WithSaturation:
    """Every metric of `source`, plus fastinfer_saturation = sum(load) / sum(capacity): the
    mean over the server processes of each one's saturation (each publishes its own as load,
    and 1 as capacity)."""

    def __init__(self, source: Any) -> None:
        self._source = source

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        totals = {"fastinfer_load": 0.0, "fastinfer_capacity": 0.0}
        for family in self._source.collect():
            if family.name in totals:
                totals[family.name] = sum(s.value for s in family.samples)
            yield family
        capacity = totals["fastinfer_capacity"]
        saturation = totals["fastinfer_load"] / capacity if capacity else 0.0
        yield GaugeMetricFamily(
            "fastinfer_saturation",
            "How close the pod is to the most it can serve, at whichever stage (event loop or "
            "inference) saturates first: 1.0 = it serves as fast as it can, above 1.0 requests "
            "wait (scale out before it; e.g. an HPA target of 0.7).",
            value=saturation,
        )
