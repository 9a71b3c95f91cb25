"""In-process cost of one `runtime.predict` call, pipeline vs compiled path (issue 15).

    .venv/bin/python -m bench.compiled [--models tabular,titanic,car_evaluation] [--repeat 9]
        [--rows 1,16,128]

Loads each model as the server does, validates the rows once (not timed), then times
`runtime.predict(rows, columns)` — row dicts in, predictions out, so the cost of building the
DataFrame or the compiled path's arrays is included — for 1, 16 and 128 rows (`--rows`), with
the compiled path on and off (the same loaded runtime, its `_compiled` set aside), interleaved;
it prints the median of `--repeat` timings of each. Run by hand on a quiet machine.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import TABULAR_DIR, model_dir, model_rows, quiet_logging

BATCHES = (1, 16, 128)
CAR_DIR = Path(__file__).resolve().parent.parent / "examples" / "car_evaluation"


def _per_call(call: Callable[[], Any], seconds: float = 0.05) -> float:
    """Seconds per call, from as many calls as fit in about `seconds` (at least 3)."""
    calls, started = 0, time.perf_counter()
    while True:
        call()
        calls += 1
        elapsed = time.perf_counter() - started
        if elapsed >= seconds and calls >= 3:
            return elapsed / calls


def measure(model: str, repeat: int, batches: tuple[int, ...] = BATCHES) -> list[dict[str, Any]]:
    from fastinfer.model.spec import load_model_directory
    from fastinfer.repository.local import load_local

    directory = CAR_DIR if model == "car_evaluation" else model_dir(model)
    served = load_local(load_model_directory(directory))
    runtime, schema = served.runtime, served.schema
    assert runtime is not None and schema is not None
    compiled = getattr(runtime, "_compiled", None)
    if compiled is None:
        raise SystemExit(f"{model}: not compiled: {runtime.describe()}")
    if model == "car_evaluation":  # the attribute grid, every 7th car (all kinds of car)
        grid = itertools.product(*(f.allowed or [] for f in schema.fields))
        cars = [dict(zip(schema.columns, values, strict=True)) for values in grid][::7]
        raw = [cars[i % len(cars)] for i in range(max(batches))]
    else:
        raw = model_rows(model, max(batches), exact=False)
    rows = schema.validate_rows(raw)
    results = []
    for size in batches:
        batch = [rows[i % len(rows)] for i in range(size)]
        timings: dict[str, list[float]] = {"pipeline": [], "compiled": []}
        for _ in range(repeat):
            for path in ("pipeline", "compiled"):
                runtime._compiled = compiled if path == "compiled" else None  # type: ignore[attr-defined]
                call = lambda b=batch: runtime.predict(b, schema.columns)  # noqa: E731
                timings[path].append(_per_call(call))
        runtime._compiled = compiled  # type: ignore[attr-defined]
        pipeline, fast = (statistics.median(timings[p]) for p in ("pipeline", "compiled"))
        results.append({"model": model, "rows": size, "pipeline_us": pipeline * 1e6,
                        "compiled_us": fast * 1e6, "speedup": pipeline / fast})  # fmt: skip
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--models", default="tabular,titanic")
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--rows", default=",".join(map(str, BATCHES)), help="batch sizes")
    args = parser.parse_args(argv)
    batches = tuple(int(n) for n in args.rows.split(",") if n.strip())
    quiet_logging()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if "tabular" in models and not (TABULAR_DIR / "model.yaml").exists():
        from bench.models.tabular import build_tabular_model_dir

        build_tabular_model_dir(TABULAR_DIR)
    print("| model | rows | pipeline µs/call | compiled µs/call | speed-up |")
    print("|---|---:|---:|---:|---:|")
    for model in models:
        for r in measure(model, args.repeat, batches):
            print(f"| {r['model']} | {r['rows']} | {r['pipeline_us']:.0f} | "
                  f"{r['compiled_us']:.0f} | {r['speedup']:.1f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
