"""In-process cost of one `runtime.predict` call, pipeline vs compiled path (issue 15).

    .venv/bin/python -m bench.compiled [--models tabular,titanic] [--repeat 9]

Loads each model as the server does, validates the rows once (not timed), then times
`runtime.predict(rows, columns)` — row dicts in, predictions out, so the cost of building the
DataFrame or the compiled path's arrays is included — for 1, 16 and 128 rows, with the compiled
path on and off (the same loaded runtime, its `_compiled` set aside), interleaved; it prints the
median of `--repeat` timings of each. Run by hand on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench.common import TABULAR_DIR, model_dir, model_rows, quiet_logging

BATCHES = (1, 16, 128)


def _per_call(call: Callable[[], Any], seconds: float = 0.05) -> float:
    """Seconds per call, from as many calls as fit in about `seconds` (at least 3)."""
    calls, started = 0, time.perf_counter()
    while True:
        call()
        calls += 1
        elapsed = time.perf_counter() - started
        if elapsed >= seconds and calls >= 3:
            return elapsed / calls


def measure(model: str, repeat: int) -> list[dict[str, Any]]:
    from fastinfer.model.spec import load_model_directory
    from fastinfer.repository.local import load_local

    served = load_local(load_model_directory(model_dir(model)))
    runtime, schema = served.runtime, served.schema
    assert runtime is not None and schema is not None
    compiled = getattr(runtime, "_compiled", None)
    if compiled is None:
        raise SystemExit(f"{model}: not compiled: {runtime.describe()}")
    rows = schema.validate_rows(model_rows(model, max(BATCHES), exact=False))
    results = []
    for size in BATCHES:
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
    args = parser.parse_args(argv)
    quiet_logging()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if "tabular" in models and not (TABULAR_DIR / "model.yaml").exists():
        from bench.models.tabular import build_tabular_model_dir

        build_tabular_model_dir(TABULAR_DIR)
    print("| model | rows | pipeline µs/call | compiled µs/call | speed-up |")
    print("|---|---:|---:|---:|---:|")
    for model in models:
        for r in measure(model, args.repeat):
            print(f"| {r['model']} | {r['rows']} | {r['pipeline_us']:.0f} | "
                  f"{r['compiled_us']:.0f} | {r['speedup']:.1f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
