"""The load-time guard: the compiled path is used only where it gives the pipeline's answers.

`check_rows` makes the rows (the examples, the reference statistics' values, synthetic rows drawn
from the schema and the fitted statistics); `check_compiled` compares the compiled path with the
pipeline on them in several batch compositions (docs/model-format.md, "Compiled pipelines").
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fastinfer.model.spec import InputField
from fastinfer.runtimes.base import Row
from fastinfer.runtimes.compiled.pipeline import CompiledPipeline
from fastinfer.runtimes.compiled.steps import Plan
from fastinfer.runtimes.frames import column_kind

# Probabilities agree within this (absolute) and labels exactly, or the path stays off: the
# tolerance the docs already state for scikit-learn across batch compositions.
TOLERANCE = 1e-15


@dataclass(frozen=True, slots=True)
class CheckResult:
    """How the compiled path compared with the pipeline."""

    rows: int
    batches: int
    max_difference: float
    mismatch: str | None  # None: every answer agreed
    answered: int = 0  # batches the compiled path answered (rather than deferring)


def check_compiled(
    compiled: CompiledPipeline,
    reference: Callable[[list[Row]], tuple[Any, list[int]]],
    rows: list[Row],
    *,
    singles: int = 12,
) -> CheckResult:
    """Compare `compiled` with `reference` (the pipeline's probabilities and class columns) on
    `rows`: the first `singles` one at a time, then in batches of 7 and 40 and all at once
    (about 40 pipeline calls for 160 rows: tens of milliseconds per worker at load).

    A batch the pipeline refuses (raises) must make the compiled path defer (answer None).
    """
    batches: list[list[Row]] = [[row] for row in rows[:singles]]
    for size in (7, 40):
        batches += [rows[i : i + size] for i in range(0, len(rows), size)]
    batches.append(rows)
    worst = 0.0
    answered = 0
    for number, batch in enumerate(batches):
        got = compiled(batch)
        try:
            expected, labels = reference(batch)
        except Exception as exc:
            if got is not None:
                return CheckResult(
                    len(rows),
                    number + 1,
                    worst,
                    f"the pipeline refused a batch "
                    f"the compiled path answered ({type(exc).__name__})",
                )
            continue
        if got is None:
            continue  # deferring is always faithful
        answered += 1
        probabilities, chosen = got
        expected = np.asarray(expected, dtype=np.float64)
        if probabilities.shape != expected.shape:
            return CheckResult(len(rows), number + 1, worst, "probability shapes differ")
        difference = float(np.max(np.abs(probabilities - expected), initial=0.0))
        worst = max(worst, difference)
        if not difference <= TOLERANCE:
            return CheckResult(
                len(rows),
                number + 1,
                worst,
                f"probabilities differ by {difference:.3g} in a batch of {len(batch)}",
            )
        if list(chosen) != list(labels):
            return CheckResult(
                len(rows), number + 1, worst, f"labels differ in a batch of {len(batch)}"
            )
    if not answered:
        return CheckResult(len(rows), len(batches), worst, "it answered none of the batches")
    return CheckResult(len(rows), len(batches), worst, None, answered)


def check_rows(
    compiled: CompiledPipeline,
    fields: list[InputField],
    examples: list[Row],
    reference: Path | None,
    *,
    count: int = 128,
    seed: int = 0,
) -> list[Row]:
    """The rows the check runs on: the examples, rows made of the reference statistics' values
    (bin edges, extremes, means, categories), then `count` synthetic rows drawn deterministically
    from the schema and the fitted statistics (known categories, an unseen one, missing values,
    numbers around the fitted means and at the declared bounds)."""
    plan = compiled.plan
    rng = np.random.default_rng(seed)
    rows = [dict(row) for row in examples]
    rows += _reference_rows(fields, reference, rng)
    for _ in range(count):
        rows.append({f.name: _synthetic(f, plan, rng) for f in fields})
    return rows


def _reference_rows(fields: list[InputField], path: Path | None, rng: Any) -> list[Row]:
    """Rows cycling through the values a reference.json names (none without the file)."""
    if path is None or not path.is_file():
        return []
    try:
        stats = json.loads(path.read_text(encoding="utf-8"))
        features = stats.get("features", {}) if isinstance(stats, dict) else {}
    except (OSError, ValueError):
        return []
    values: dict[str, list[Any]] = {}
    for f in fields:
        entry = features.get(f.name)
        if not isinstance(entry, dict):
            continue
        if entry.get("kind") == "numeric":
            found = [e for e in entry.get("bins", []) if isinstance(e, int | float)]
            found += [
                entry[k] for k in ("min", "max", "mean") if isinstance(entry.get(k), int | float)
            ]
        else:
            found = list(entry.get("counts", {}))
        typed = [v for v in (_typed(f, x) for x in found) if v is not None]
        if typed:
            values[f.name] = typed
    if not values:
        return []
    longest = min(max(len(v) for v in values.values()), 32)
    return [
        {
            f.name: values[f.name][i % len(values[f.name])] if f.name in values else _filler(f)
            for f in fields
        }
        for i in range(longest)
    ]


def _typed(f: InputField, value: Any) -> Any:
    """A reference value (a category key or a number) as the field's rows hold it."""
    kind = column_kind(f)
    try:
        if kind == "integer":
            number = float(value)
            return int(number) if number.is_integer() else None
        if kind == "number":
            return float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if kind == "string":
        return str(value)
    return None


def _synthetic(f: InputField, plan: Plan, rng: Any) -> Any:
    if f.nullable and rng.random() < 0.1:
        return None
    kind = column_kind(f)
    if f.allowed:
        return f.allowed[int(rng.integers(len(f.allowed)))]
    known = plan.categories.get(f.name)
    if known:
        if kind == "string" and rng.random() < 0.05:
            return "\x00unseen"
        return known[int(rng.integers(len(known)))]
    if kind in ("integer", "number"):
        centre, spread = plan.numbers.get(f.name, (0.0, 10.0))
        value = centre + spread * float(rng.normal(0, 2))
        if f.minimum is not None and (value < f.minimum or rng.random() < 0.05):
            value = f.minimum
        if f.maximum is not None and (value > f.maximum or rng.random() < 0.05):
            value = f.maximum
        return round(value) if kind == "integer" else value
    return _filler(f)


def _filler(f: InputField) -> Any:
    """A value of the field's type for a column the compiled path does not read."""
    if f.allowed:
        return f.allowed[0]
    kind = column_kind(f)
    if f.nullable or kind == "any":
        return None
    return {"integer": 0, "number": 0.0, "string": "", "boolean": False}.get(kind)
