"""Reference statistics of a sample: what "normal" inputs and predictions look like.

`fastinfer init --sample` writes them to `reference.json` in the model directory, so that drift
(the population stability index, PSI) can later be computed by binning live traffic the same way
and comparing the two distributions. Everything a later comparison needs is in the file; the bins
are fixed here, once, from the reference sample.

Format (version 1); keys are written sorted, so the same sample gives the same file apart from
`created_at`::

    {
      "format": 1,
      "rows": 1000,                              # rows in the sample
      "created_at": "2025-01-31T12:00:00+00:00", # UTC, ISO 8601
      "features": {
        "<numeric field>": {
          "kind": "numeric",
          "bins": ["-inf", 1.5, 3.0, ..., "inf"],  # edges: see below
          "counts": [100, 98, ...],               # len(bins) - 1 counts
          "missing": 3,                           # null, NaN or infinite values
          "mean": 2.1, "std": 0.9, "min": 0.0, "max": 9.5   # of the finite values; null if none
        },
        "<categorical field>": {
          "kind": "categorical",
          "counts": {"blue": 10, "red": 12},      # by `category_key`
          "missing": 0
        }
      },
      "prediction": {...} | null  # same shape: categorical for labels, numeric for values
    }

Rules a drift check must follow to compare like with like:

- Numeric bins: at most 10, one per decile. The inner edges are the sample's deciles 10%..90%,
  taken as sample values, deduplicated, and below the maximum, so that no reference bin is
  empty; the outer edges are -inf and +inf, so every future value falls in some bin. A value x
  falls in bin i when `bins[i] < x <= bins[i + 1]` (`bin_counts` does this). JSON has no
  infinity: the outer edges are written as the strings "-inf" and "inf" (`read_reference` turns
  them back into floats). `std` is the population standard deviation.
- For each feature and the prediction, `sum(counts) + missing == rows`.
- Categorical values are counted under `category_key(value)`: strings as they are, booleans as
  "true"/"false", whole numbers without a decimal point ("3", also for 3.0), other numbers as
  Python writes them.
- A field is categorical when it has `allowed` values or is a string or boolean; integer and
  number fields are numeric; `any` fields follow the sample's dtype. Tensor fields (`shape`) are
  left out, and so are identifier-like categorical fields without `allowed` values (names,
  tickets, ids: more than `MAX_CATEGORIES` distinct values, on average fewer than four rows
  each), whose live values are nearly all unseen, so their PSI would always read as drift.
  Predictions are categorical when they are labels (strings), numeric otherwise.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from fastinfer.model.spec import InputField

FORMAT_VERSION = 1
REFERENCE_FILENAME = "reference.json"
_INFINITIES = {"-inf": -math.inf, "inf": math.inf}
MAX_CATEGORIES = 50  # a free-text field with more distinct values is left out (see above)


def category_key(value: Any) -> str | None:
    """The key a categorical value is counted under; None for a missing value."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value
    try:
        missing = bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or array: not a scalar
        missing = False
    return None if missing else str(value)


def bin_counts(edges: Sequence[float], values: Iterable[float]) -> list[int]:
    """How many values fall in each bin `(edges[i], edges[i + 1]]`; NaN values are skipped.

    The reference and a later drift check must bin identically: both call this.
    """
    if len(edges) < 2:
        raise ValueError("bins need at least two edges")
    array = np.asarray(list(values), dtype=float)
    array = array[~np.isnan(array)]
    inner = np.asarray(edges[1:-1], dtype=float)
    index = np.searchsorted(inner, array, side="left")
    return [int(c) for c in np.bincount(index, minlength=len(edges) - 1)]


def reference_statistics(
    frame: pd.DataFrame,
    fields: Sequence[InputField],
    predictions: Sequence[Any] | None = None,
    *,
    created_at: datetime | None = None,
) -> dict[str, Any]:
    """Statistics of each input field's column in `frame` (and of the predictions, if given).

    `predictions` holds one label (classifier) or value (regressor) per row of `frame`, None for
    a row the model could not predict (counted as missing). See the module docstring for the
    format.
    """
    rows = len(frame)
    features: dict[str, Any] = {}
    for field in fields:
        if field.shape is not None:
            continue  # a tensor per row: no single distribution to compare
        if field.name not in frame.columns:
            raise ValueError(f"the sample has no column {field.name!r}")
        series = frame[field.name]
        if _is_categorical(field, series):
            if field.allowed is None and _identifier_like(series):
                continue  # names, tickets, ids: every value new, so PSI says nothing
            features[field.name] = _categorical(series)
        else:
            features[field.name] = _numeric(series)
    prediction: dict[str, Any] | None = None
    if predictions is not None:
        if len(predictions) != rows:
            raise ValueError(f"{len(predictions)} predictions for a sample of {rows} rows")
        values = pd.Series(list(predictions), dtype=object)
        labels = any(isinstance(v, str | bool) for v in predictions)
        prediction = _categorical(values) if labels else _numeric(values)
    stamp = (created_at or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds")
    return {
        "format": FORMAT_VERSION,
        "rows": rows,
        "created_at": stamp,
        "features": features,
        "prediction": prediction,
    }


def write_reference(path: Path, stats: dict[str, Any]) -> None:
    """Write `stats` as standard JSON (infinite bin edges as strings), keys sorted."""
    text = json.dumps(_encode(stats), indent=2, sort_keys=True, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")


def read_reference(path: Path) -> dict[str, Any]:
    """Read a reference file back, with float infinities as the outer bin edges."""
    try:
        stats = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(stats, dict) or stats.get("format") != FORMAT_VERSION:
        found = stats.get("format") if isinstance(stats, dict) else None
        raise ValueError(
            f"{path}: not a reference file of format {FORMAT_VERSION} (format: {found!r})"
        )
    for entry in [*stats.get("features", {}).values(), stats.get("prediction")]:
        if isinstance(entry, dict) and entry.get("kind") == "numeric":
            entry["bins"] = [
                _INFINITIES.get(e, e) if isinstance(e, str) else e for e in entry["bins"]
            ]
    return stats


def _is_categorical(field: InputField, series: pd.Series[Any]) -> bool:
    if field.allowed is not None or field.type in ("string", "boolean"):
        return True
    if field.type in ("integer", "number"):
        return False
    dtype = series.dtype
    return bool(pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype))


def _identifier_like(series: pd.Series[Any]) -> bool:
    """More than MAX_CATEGORIES distinct values, most of them seen once or twice."""
    values = series.dropna()
    distinct = values.nunique()
    return bool(distinct > MAX_CATEGORIES and distinct > len(values) / 4)


def _categorical(series: pd.Series[Any]) -> dict[str, Any]:
    keys = [category_key(v) for v in series.tolist()]
    counts = Counter(k for k in keys if k is not None)
    return {
        "kind": "categorical",
        "counts": dict(sorted(counts.items())),
        "missing": sum(1 for k in keys if k is None),
    }


def _numeric(series: pd.Series[Any]) -> dict[str, Any]:
    numbers: npt.NDArray[np.float64] = (
        pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        if not pd.api.types.is_bool_dtype(series.dtype)
        else series.to_numpy(dtype=float, na_value=np.nan)
    )
    finite = numbers[np.isfinite(numbers)]
    inner: list[float] = []
    if finite.size:
        # Sample values at the deciles, so that no bin is empty: each inner edge is a value that
        # its bin holds, and the maximum falls in the open top bin.
        # Positions in whole numbers (ceil(k * n / 10) - 1): the same edges on every platform.
        ordered = np.sort(finite)
        positions = [(k * ordered.size + 9) // 10 - 1 for k in range(1, 10)]
        top = ordered[-1]
        inner = sorted({float(ordered[i]) for i in positions if ordered[i] < top})
    edges = [-math.inf, *inner, math.inf]
    described = finite.size > 0
    return {
        "kind": "numeric",
        "bins": edges,
        "counts": bin_counts(edges, finite),
        "missing": int(numbers.size - finite.size),
        "mean": float(finite.mean()) if described else None,
        "std": float(finite.std()) if described else None,
        "min": float(finite.min()) if described else None,
        "max": float(finite.max()) if described else None,
    }


def _encode(stats: dict[str, Any]) -> dict[str, Any]:
    """A copy with infinite bin edges as "-inf"/"inf": the file stays standard JSON."""
    encoded = json.loads(json.dumps(stats))  # a deep copy (Python's json round-trips infinity)
    for entry in [*encoded.get("features", {}).values(), encoded.get("prediction")]:
        if isinstance(entry, dict) and entry.get("kind") == "numeric":
            entry["bins"] = [_infinity_text(e) for e in entry["bins"]]
    return encoded  # type: ignore[no-any-return]


def _infinity_text(edge: float) -> float | str:
    if math.isinf(edge):
        return "inf" if edge > 0 else "-inf"
    return edge
