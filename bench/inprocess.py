"""The in-process limit: rows/s of `runtime.predict` with no HTTP, at the best batch size.

How it is measured (and documented in docs/benchmarks.md):
- each process loads the model with `load_local(load_model_directory(DIR))`, exactly as the server
  loads it (same runtime options), validates the rows once (not timed), and predicts every batch
  size once to warm up;
- for each batch size in turn, all processes wait on one barrier, then call
  `model.runtime.predict(batch, model.schema.columns)` back to back for `seconds` (at least 3
  calls) and report rows / elapsed;
- it is run with 1 process and with W processes in parallel (spawned, one per core); the rows/s of
  the W processes are added. The limit is the best sum over batch sizes and process counts.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

BATCH_SIZES = (1, 8, 32, 128, 512)
MIN_CALLS = 3
MAX_CALLS = 1_000_000
BARRIER_TIMEOUT_S = 300.0


def _worker(
    directory: str,
    raw_rows: list[dict[str, Any]],
    batch_sizes: tuple[int, ...],
    seconds: float,
    barrier: Barrier,
    results: Queue[dict[str, Any]],
) -> None:
    """One process: load, warm up, then time each batch size after the shared barrier."""
    try:
        results.put({"timings": _time_batches(directory, raw_rows, batch_sizes, seconds, barrier)})
    except Exception as exc:  # reported, never hung: the others see a broken barrier
        barrier.abort()
        results.put({"error": f"{type(exc).__name__}: {exc}"})


def _time_batches(
    directory: str,
    raw_rows: list[dict[str, Any]],
    batch_sizes: tuple[int, ...],
    seconds: float,
    barrier: Barrier,
) -> dict[int, dict[str, float]]:
    from bench.common import quiet_logging
    from fastinfer.model.spec import load_model_directory
    from fastinfer.repository.local import load_local

    quiet_logging()
    model = load_local(load_model_directory(Path(directory)))
    assert model.schema is not None and model.runtime is not None
    predict, columns = model.runtime.predict, model.schema.columns
    rows = model.schema.validate_rows(raw_rows)
    batches = {b: [rows[i % len(rows)] for i in range(b)] for b in batch_sizes}
    for batch in batches.values():
        predict(batch, columns)
    timings: dict[int, dict[str, float]] = {}
    for size, batch in batches.items():
        barrier.wait(BARRIER_TIMEOUT_S)
        calls = 0
        started = time.perf_counter()
        elapsed = 0.0
        while calls < MAX_CALLS:
            predict(batch, columns)
            calls += 1
            elapsed = time.perf_counter() - started
            if elapsed >= seconds and calls >= MIN_CALLS:
                break
        timings[size] = {
            "calls": calls,
            "seconds": elapsed,
            "rows_per_s": calls * size / elapsed,
            "ms_per_call": 1000 * elapsed / calls,
        }
    return timings


def measure(
    directory: Path,
    raw_rows: list[dict[str, Any]],
    processes: int,
    seconds: float,
    batch_sizes: tuple[int, ...] = BATCH_SIZES,
) -> dict[str, Any]:
    """rows/s per batch size for `processes` parallel processes (summed), and the best of them."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(processes)
    results: Queue[dict[str, Any]] = ctx.Queue()
    workers = [
        ctx.Process(
            target=_worker,
            args=(str(directory), raw_rows, batch_sizes, seconds, barrier, results),
            name=f"bench-inprocess-{i}",
        )
        for i in range(processes)
    ]
    for w in workers:
        w.start()
    budget = 120 + len(batch_sizes) * (seconds * 3 + 30)
    outcomes: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + budget
        for _ in range(processes):
            outcomes.append(results.get(timeout=max(1.0, deadline - time.monotonic())))
    except Exception as exc:  # queue.Empty: a worker hung or died
        outcomes.append({"error": f"no result within {budget:.0f} s ({type(exc).__name__})"})
    finally:
        for w in workers:
            w.join(timeout=10)
            if w.is_alive():
                w.kill()
                w.join(timeout=10)
    errors = [o["error"] for o in outcomes if "error" in o]
    if errors:
        return {"processes": processes, "error": errors[0]}
    per_size: dict[str, Any] = {}
    for size in batch_sizes:
        each = [o["timings"][size] for o in outcomes]
        per_size[str(size)] = {
            "rows_per_s": round(sum(t["rows_per_s"] for t in each), 1),
            "ms_per_call": round(sum(t["ms_per_call"] for t in each) / len(each), 4),
            "per_process_rows_per_s": [round(t["rows_per_s"], 1) for t in each],
        }
    best = max(per_size, key=lambda s: per_size[s]["rows_per_s"])
    return {
        "processes": processes,
        "seconds_per_size": seconds,
        "batch_sizes": per_size,
        "best_batch_size": int(best),
        "best_rows_per_s": per_size[best]["rows_per_s"],
    }


def in_process_limit(
    directory: Path, raw_rows: list[dict[str, Any]], workers: int, seconds: float
) -> dict[str, Any]:
    """Measure with 1 process and with `workers` processes; the limit is the best of all."""
    runs = [measure(directory, raw_rows, 1, seconds)]
    if workers > 1:
        runs.append(measure(directory, raw_rows, workers, seconds))
    good = [r for r in runs if "error" not in r]
    if not good:
        return {"runs": runs, "error": runs[0]["error"]}
    best = max(good, key=lambda r: r["best_rows_per_s"])
    return {
        "runs": runs,
        "rows_per_s": best["best_rows_per_s"],
        "batch_size": best["best_batch_size"],
        "processes": best["processes"],
    }
