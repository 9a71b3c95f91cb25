"""A compiled path for common fitted scikit-learn pipelines: the same arithmetic, no DataFrame.

A `Pipeline(ColumnTransformer[...] → LogisticRegression)` costs milliseconds per call whatever
the batch holds: pandas column selection, each transformer's input validation and the final
estimator's checks, twice (predict_proba and predict). The arithmetic itself is a few NumPy
operations. `compile_pipeline` walks the fitted estimators' learned attributes once, at load, and
returns a `CompiledPipeline` that computes from the rows' columns directly:

- `ColumnTransformer` (dense output; columns chosen by name, position, mask or slice; remainder
  and nested `Pipeline`s included) over `OneHotEncoder` (float64, `drop`, `handle_unknown`
  "error", "ignore" and "infrequent_if_exist" when no category is infrequent), `StandardScaler`,
  `MinMaxScaler`, `SimpleImputer` (NaN markers, no indicator) and "passthrough"/"drop";
- then `StandardScaler`/`MinMaxScaler` on the whole matrix, then `LogisticRegression` (binary or
  multinomial). A bare `LogisticRegression` fitted on a frame of numbers compiles too.

Each operation is the one scikit-learn applies, in its order and dtype (float64): a scaler's
`(x - mean_) / scale_`, the imputer's fill, one-hot columns set to 1.0 in a zeroed C-ordered
matrix (as `np.hstack` assembles it), the decision function `X @ coef_.T + intercept_`, then
`scipy.special.expit` and `[1 - p, p]`, or sklearn's softmax; the label is the decision
function's sign or first maximum, as `LogisticRegression.predict` takes it. Only scikit-learn's own
classes are compiled (exact class, not subclasses); anything else raises `NotCompilable`, and
the caller keeps the pipeline. Where a batch would make the pipeline fail (an unknown category
with handle_unknown="error", a NaN reaching the model), the compiled path answers None and the
caller asks the pipeline, so the client sees the pipeline's own error.

`check_compiled` is the guard: the runtime enables the path only when it reproduces the
pipeline's answers on the example, the reference and synthetic rows, in several batch
compositions (docs/model-format.md, "Compiled pipelines").
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.special import expit

from fastinfer.model.spec import InputField
from fastinfer.runtimes.base import Row
from fastinfer.runtimes.frames import column_kind

Float64Array = npt.NDArray[np.float64]
Frame = Callable[[Sequence[Row]], Any]  # rows → the DataFrame the pipeline reads
# Probabilities agree within this (absolute) and labels exactly, or the path stays off: the
# tolerance the docs already state for scikit-learn across batch compositions.
TOLERANCE = 1e-15
_IGNORED = -1  # a category that sets no one-hot column
_REFUSED = -2  # a value the pipeline refuses (handle_unknown="error"): the pipeline answers
_LOOP_ROWS = 8  # up to this many rows, one-hot cells are set one by one (cheaper than indexing)


class NotCompilable(Exception):  # noqa: N818 - a reason, not a failure
    """Why a fitted estimator has no compiled path (the message is shown in model metadata)."""


# --- the compiled operations -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Affine:
    """One elementwise step on a block of float64 columns, as the scikit-learn class does it."""

    kind: str  # "fill" (SimpleImputer), "standard", "minmax"
    first: Float64Array | None = None  # fill values / mean_ / scale_ (MinMax: scale_)
    second: Float64Array | None = None  # scale_ / min_
    clip: tuple[float, float] | None = None

    def apply(self, block: Float64Array) -> Float64Array:
        if self.kind == "fill":
            assert self.first is not None
            missing = np.isnan(block)
            if missing.any():
                block = np.where(missing, self.first, block)
            return block
        if self.kind == "standard":  # StandardScaler.transform: X -= mean_; X /= scale_
            if self.first is not None:
                block -= self.first
            if self.second is not None:
                block /= self.second
            return block
        assert self.first is not None and self.second is not None  # MinMaxScaler.transform
        block *= self.first
        block += self.second
        if self.clip is not None:
            np.clip(block, self.clip[0], self.clip[1], out=block)
        return block


@dataclass(frozen=True, slots=True)
class _Numbers:
    """Input columns read as float64, through elementwise steps, into output columns."""

    columns: tuple[str, ...]
    start: int
    steps: tuple[_Affine, ...]


@dataclass(frozen=True, slots=True)
class _OneHot:
    """One encoded input column: value → its output column (absolute), `_IGNORED` or
    `_REFUSED`; `missing` is what None (NaN in the pipeline's frame) maps to."""

    column: str
    table: dict[Any, int]
    missing: int
    unknown: int


@dataclass(slots=True)
class _Plan:
    """What the walk found: the blocks in output order, the width, the matrix steps."""

    columns: list[str]
    blocks: list[_Numbers | _OneHot] = field(default_factory=list)
    width: int = 0
    matrix_steps: list[_Affine] = field(default_factory=list)
    numbers: dict[str, tuple[float, float]] = field(default_factory=dict)  # column → centre, spread
    categories: dict[str, list[Any]] = field(default_factory=dict)  # column → known values
    prefix: list[Any] = field(default_factory=list)  # steps run as they are, on the frame
    why_prefix: str = ""  # what kept them from being compiled


class CompiledPipeline:
    """The compiled pipeline: rows → (probabilities, class columns), or None for the pipeline."""

    def __init__(
        self,
        plan: _Plan,
        coef: Float64Array,
        intercept: Float64Array,
        frame: Frame | None = None,
    ) -> None:
        self.plan = plan
        self._prefix = plan.prefix
        self._frame = frame
        self._blocks = plan.blocks
        self._width = plan.width
        self._matrix_steps = plan.matrix_steps
        self._coef_t = coef.T  # the same view LogisticRegression.decision_function multiplies by
        self._intercept = intercept
        self._binary = coef.shape[0] == 1
        self.description = _describe(plan)

    def features(self, rows: Sequence[Row]) -> Float64Array | None:
        """The matrix the pipeline's final estimator would see, or None (the pipeline answers)."""
        if self._prefix:
            return self._prefixed(rows)
        count = len(rows)
        matrix = np.zeros((count, self._width), dtype=np.float64)
        hot: list[list[int]] = []  # each encoded column's output column per row
        for block in self._blocks:
            if isinstance(block, _OneHot):
                name, table, unknown = block.column, block.table, block.unknown
                missing = block.missing
                columns = [  # NaN (the one value unequal to itself) is missing too, as in pandas
                    missing if (v := row.get(name)) is None or v != v else table.get(v, unknown)  # noqa: PLR0124
                    for row in rows
                ]
                if _REFUSED in columns:
                    return None
                hot.append(columns)
                continue
            values = _float_block(rows, block.columns)
            for step in block.steps:
                values = step.apply(values)
            matrix[:, block.start : block.start + len(block.columns)] = values
        if count <= _LOOP_ROWS:
            for columns in hot:
                for index, column in enumerate(columns):
                    if column >= 0:
                        matrix[index, column] = 1.0
        elif hot:
            where = np.array(hot, dtype=np.intp)  # (encoded columns, rows)
            row_index = np.broadcast_to(np.arange(count), where.shape)
            set_ = where >= 0
            matrix[row_index[set_], where[set_]] = 1.0
        for step in self._matrix_steps:
            matrix = step.apply(matrix)
        if not np.isfinite(matrix).all():
            return None  # LogisticRegression refuses NaN and infinity: let it say so
        return matrix

    def _prefixed(self, rows: Sequence[Row]) -> Float64Array | None:
        """The uncompiled steps on the frame, as the pipeline runs them, then the compiled
        elementwise steps; None for anything but a dense finite float64 matrix."""
        assert self._frame is not None
        features = self._frame(rows)
        for step in self._prefix:
            features = step.transform(features)
        if not isinstance(features, np.ndarray) or features.dtype != np.float64:
            return None
        if features.ndim != 2 or features.shape[1] != self._width:
            return None
        for step in self._matrix_steps:
            features = step.apply(features.copy() if step.kind != "fill" else features)
        if not np.isfinite(features).all():
            return None
        matrix: Float64Array = features
        return matrix

    def __call__(self, rows: Sequence[Row]) -> tuple[Float64Array, list[int]] | None:
        """Probabilities as `predict_proba` gives them and each row's class column as `predict`
        picks it; None where the pipeline must answer itself."""
        matrix = self.features(rows)
        if matrix is None:
            return None
        scores = matrix @ self._coef_t + self._intercept
        if self._binary:
            scores = scores.reshape(-1)
            chosen = (scores > 0).astype(np.intp).tolist()
            positive = expit(scores, out=scores)
            return np.stack([1 - positive, positive], axis=1), chosen
        chosen = scores.argmax(axis=1).tolist()
        return _softmax(scores), chosen


def _float_block(rows: Sequence[Row], columns: tuple[str, ...]) -> Float64Array:
    """Columns of rows → an (n, k) float64 array, None → NaN (as the frame gives them).

    Built column by column and transposed: NumPy converts a list of one column's values (ints
    and floats alike) about three times faster than a list of mixed rows.
    """
    values = [[row.get(name) for row in rows] for name in columns]
    try:
        return np.array(values, dtype=np.float64).T
    except TypeError:
        return np.array(
            [[np.nan if v is None else v for v in column] for column in values], dtype=np.float64
        ).T


def _softmax(scores: Float64Array) -> Float64Array:
    """`sklearn.utils.extmath.softmax(scores, copy=False)` for NumPy arrays, step for step."""
    scores -= scores.max(axis=1).reshape((-1, 1))
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=1).reshape((-1, 1))
    return scores


def _describe(plan: _Plan) -> str:
    if plan.prefix:
        names = ", ".join(type(step).__name__ for step in plan.prefix)
        return (
            f"{names} run as they are ({plan.why_prefix}), then {len(plan.matrix_steps)} "
            "elementwise step(s) and the model"
        )
    encoded = sum(isinstance(b, _OneHot) for b in plan.blocks)
    numeric = sum(len(b.columns) for b in plan.blocks if isinstance(b, _Numbers))
    return f"{encoded} encoded and {numeric} numeric column(s) → {plan.width} features"


# --- walking the fitted estimators -------------------------------------------------------------


def compile_pipeline(
    estimator: Any, fields: list[InputField], *, frame: Frame | None = None
) -> CompiledPipeline:
    """The compiled form of a fitted estimator whose input rows have `fields`.

    Steps before the compiled ones that are not scikit-learn's (a custom feature transformer,
    as in examples/titanic) still run, on the DataFrame `frame` builds, when `frame` is given;
    what follows them is compiled. Raises NotCompilable naming the first step (or column) it
    cannot reproduce exactly.
    """
    kinds = {f.name: column_kind(f) for f in fields}
    if "tensor" in kinds.values():
        raise NotCompilable("a tensor input field")
    names = getattr(estimator, "feature_names_in_", None)
    columns = [str(n) for n in names] if names is not None else None
    if columns is None or columns != [f.name for f in fields]:
        raise NotCompilable("the estimator was not fitted on a frame with the schema's columns")
    steps = _flattened(estimator)
    *transforms, final = steps
    if sklearn_class(final) != "LogisticRegression":
        raise NotCompilable(f"final step {type(final).__name__} (compiled: LogisticRegression)")
    plan = _Plan(columns)
    tail: list[_Affine] = []
    while transforms and (affine := _affine(transforms[-1])) is not None:
        tail.insert(0, affine)
        transforms.pop()
    plan.matrix_steps = tail
    if not transforms:
        _numbers(columns, [], plan, kinds)
    else:
        try:
            if len(transforms) > 1 or sklearn_class(transforms[0]) != "ColumnTransformer":
                raise NotCompilable(f"step {type(transforms[-1]).__name__} before the model")
            _column_transformer(transforms[0], plan, kinds)
        except NotCompilable as exc:
            if frame is None or not all(hasattr(step, "transform") for step in transforms):
                raise
            plan = _Plan(columns, matrix_steps=tail, prefix=transforms, why_prefix=str(exc))
            plan.width = int(final.coef_.shape[1]) if hasattr(final, "coef_") else 0
    coef, intercept = _logistic(final, plan.width)
    return CompiledPipeline(plan, coef, intercept, frame)


def _flattened(estimator: Any) -> list[Any]:
    """A plain Pipeline's steps, nested pipelines unrolled, passthrough steps left out."""
    if sklearn_class(estimator) != "Pipeline":
        return [estimator]
    if _output_config(estimator):
        raise NotCompilable("a pipeline with set_output")
    steps: list[Any] = []
    for _, step in estimator.steps:
        if not _is_passthrough(step):
            steps.extend(_flattened(step))
    return steps


def _column_transformer(ct: Any, plan: _Plan, kinds: dict[str, str]) -> None:
    if getattr(ct, "sparse_output_", True):
        raise NotCompilable("a ColumnTransformer with sparse output")
    if _output_config(ct):
        raise NotCompilable("a ColumnTransformer with set_output")
    for name, transformer, spec in ct.transformers_:
        selected = _selected(spec, plan.columns, name)
        if not selected or (isinstance(transformer, str) and transformer == "drop"):
            continue
        chain = [] if _is_passthrough(transformer) else _flattened(transformer)
        chain = [step for step in chain if not _is_passthrough(step)]
        if chain and sklearn_class(chain[-1]) == "OneHotEncoder":
            _encoded(selected, chain[:-1], chain[-1], plan, kinds)
        else:
            _numbers(selected, chain, plan, kinds)


def _selected(spec: Any, columns: list[str], name: str) -> list[str]:
    """The input columns a fitted ColumnTransformer entry reads, as 2-D (a lone name is 1-D)."""
    if isinstance(spec, str) or callable(spec):
        raise NotCompilable(f"column selection of {name!r} ({spec!r})")
    if isinstance(spec, slice):
        if isinstance(spec.start, str) or isinstance(spec.stop, str):
            raise NotCompilable(f"a slice of names in {name!r}")
        return columns[spec]
    items = spec.tolist() if isinstance(spec, np.ndarray) else list(spec)
    if items and all(isinstance(i, bool) for i in items) and len(items) == len(columns):
        return [c for c, keep in zip(columns, items, strict=True) if keep]
    if all(isinstance(i, str) for i in items) and set(items) <= set(columns):
        return [str(i) for i in items]
    if all(isinstance(i, int) and not isinstance(i, bool) for i in items):
        return [columns[i] for i in items]
    raise NotCompilable(f"column selection of {name!r}")


def _numbers(selected: list[str], chain: list[Any], plan: _Plan, kinds: dict[str, str]) -> None:
    for column in selected:
        if kinds.get(column) not in ("integer", "number"):
            raise NotCompilable(f"column {column!r} is read as numbers but its field is not one")
    steps = []
    for step in chain:
        affine = _affine(step)
        if affine is None:
            raise NotCompilable(f"step {type(step).__name__} on {', '.join(selected)}")
        steps.append(affine)
    centre, spread = np.zeros(len(selected)), np.ones(len(selected))
    for step in chain:  # the fitted statistics say where the numbers live (for the check rows)
        if sklearn_class(step) == "StandardScaler" and step.with_mean and step.with_std:
            centre, spread = np.asarray(step.mean_), np.asarray(step.scale_)
    for index, column in enumerate(selected):
        plan.numbers[column] = (float(centre[index]), float(spread[index]))
    plan.blocks.append(_Numbers(tuple(selected), plan.width, tuple(steps)))
    plan.width += len(selected)


def _affine(step: Any) -> _Affine | None:
    """An elementwise scikit-learn step as an `_Affine`; None for any other step."""
    kind = sklearn_class(step)
    if _output_config(step):
        return None
    if kind == "StandardScaler":
        mean = _floats(step.mean_) if step.with_mean else None
        scale = _floats(step.scale_) if step.with_std else None
        return _Affine("standard", mean, scale)
    if kind == "MinMaxScaler":
        low, high = step.feature_range
        clip = (float(low), float(high)) if step.clip else None
        return _Affine("minmax", _floats(step.scale_), _floats(step.min_), clip)
    if kind == "SimpleImputer":
        statistics = np.asarray(step.statistics_)
        if not _is_nan(step.missing_values) or step.add_indicator:
            return None
        if statistics.dtype.kind not in "biuf" or np.isnan(statistics.astype(float)).any():
            return None  # a string fill, or an all-missing column the imputer drops
        return _Affine("fill", statistics.astype(np.float64))
    return None


def _floats(values: Any) -> Float64Array | None:
    array = np.asarray(values)
    if array.dtype != np.float64:
        raise NotCompilable(f"fitted statistics of dtype {array.dtype}")
    return array


def _encoded(
    selected: list[str], before: list[Any], encoder: Any, plan: _Plan, kinds: dict[str, str]
) -> None:
    """A OneHotEncoder (after at most a SimpleImputer) as one lookup table per column."""
    if _output_config(encoder) or np.dtype(encoder.dtype) != np.float64:
        raise NotCompilable("a OneHotEncoder whose output is not float64")
    if getattr(encoder, "_infrequent_enabled", False) and any(
        c is not None for c in encoder.infrequent_categories_
    ):
        raise NotCompilable("a OneHotEncoder with infrequent categories")
    fills: list[Any] = [None] * len(selected)
    for step in before:
        if sklearn_class(step) != "SimpleImputer" or step.add_indicator:
            raise NotCompilable(f"step {type(step).__name__} before a OneHotEncoder")
        if not _is_nan(step.missing_values) or any(_is_nan(s) for s in step.statistics_):
            raise NotCompilable("a SimpleImputer that fills something other than NaN")
        fills = [s.item() if isinstance(s, np.generic) else s for s in step.statistics_]
    handle = encoder.handle_unknown
    if handle not in ("error", "ignore", "infrequent_if_exist"):
        raise NotCompilable(f"OneHotEncoder(handle_unknown={handle!r})")
    unknown = _REFUSED if handle == "error" else _IGNORED
    drops = encoder.drop_idx_ if encoder.drop_idx_ is not None else [None] * len(selected)
    if len(encoder.categories_) != len(selected):
        raise NotCompilable("a OneHotEncoder whose categories do not match its columns")
    for column, categories, drop, fill in zip(
        selected, encoder.categories_, drops, fills, strict=True
    ):
        table, missing, width = _one_hot_table(column, categories, drop, kinds, plan.width, unknown)
        if fill is not None:
            if fill not in table:
                raise NotCompilable(f"column {column!r} is filled with an unknown category")
            missing = table[fill]
        plan.blocks.append(_OneHot(column, table, missing, unknown))
        plan.categories[column] = list(table)
        plan.width += width


def _one_hot_table(
    column: str, categories: Any, drop: Any, kinds: dict[str, str], start: int, unknown: int
) -> tuple[dict[Any, int], int, int]:
    """Category value → absolute output column (the dropped category: `_IGNORED`), what a
    missing value maps to, and the number of output columns."""
    values = [v.item() if isinstance(v, np.generic) else v for v in categories]
    present = [v for v in values if not _is_nan(v)]
    if len(present) < len(values) - 1 or (len(present) < len(values) and not _is_nan(values[-1])):
        raise NotCompilable(f"column {column!r} has categories that are not comparable")
    kind = kinds.get(column)
    if kind == "string":
        comparable = all(isinstance(v, str) for v in present)
    elif kind in ("integer", "number"):
        comparable = np.asarray(categories).dtype.kind in "iuf" and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in present
        )
    else:
        comparable = False
    if not comparable:
        raise NotCompilable(
            f"column {column!r} ({kind}) is encoded with {np.asarray(categories).dtype} categories"
        )
    dropped = None if drop is None else int(drop)
    positions: list[int] = []
    next_column = start
    for index in range(len(values)):
        if index == dropped:
            positions.append(_IGNORED)
        else:
            positions.append(next_column)
            next_column += 1
    table = dict(zip(present, positions, strict=False))
    if len(table) != len(present):
        raise NotCompilable(f"column {column!r} has categories equal to each other")
    missing = positions[-1] if len(present) < len(values) else unknown
    return table, missing, next_column - start


def _logistic(model: Any, width: int) -> tuple[Float64Array, Float64Array]:
    coef, intercept = model.coef_, np.asarray(model.intercept_)
    if not isinstance(coef, np.ndarray) or coef.dtype != np.float64 or coef.ndim != 2:
        raise NotCompilable("LogisticRegression coefficients that are not a float64 matrix")
    if coef.shape[1] != width:
        raise NotCompilable(f"the model reads {coef.shape[1]} features, the walk found {width}")
    classes = len(model.classes_)
    if coef.shape[0] != (1 if classes == 2 else classes) or intercept.dtype != np.float64:
        raise NotCompilable("LogisticRegression coefficients that do not fit its classes")
    return coef, intercept


def _output_config(step: Any) -> bool:
    """Whether set_output asked this step for something other than NumPy arrays."""
    config = getattr(step, "_sklearn_output_config", None) or {}
    return bool(config.get("transform", "default") != "default")


def sklearn_class(step: Any) -> str | None:
    """The class name of a scikit-learn object (None for anyone else's class)."""
    cls = type(step)
    return cls.__name__ if cls.__module__.split(".")[0] == "sklearn" else None


def _is_passthrough(step: Any) -> bool:
    if step is None or (isinstance(step, str) and step == "passthrough"):
        return True
    if sklearn_class(step) != "FunctionTransformer" or step.func is not None:
        return False
    return step.inverse_func is None and not _output_config(step)


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


# --- the load-time check -----------------------------------------------------------------------


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


def _synthetic(f: InputField, plan: _Plan, rng: Any) -> Any:
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
