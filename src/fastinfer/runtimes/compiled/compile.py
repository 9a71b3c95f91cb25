"""Walking fitted scikit-learn estimators into a compiled pipeline.

`compile_pipeline` reads the fitted estimators' learned attributes once, at load, into a `Plan`
of NumPy steps (`steps.py`) and a compiled model (`linear.py`, `trees.py`). Only scikit-learn's
own classes are compiled (exact class, not subclasses); anything else raises `NotCompilable`,
naming the first step (or column) it cannot reproduce exactly, and the caller keeps the pipeline.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from fastinfer.model.spec import InputField
from fastinfer.runtimes.compiled.linear import Logistic
from fastinfer.runtimes.compiled.pipeline import CompiledPipeline, Model
from fastinfer.runtimes.compiled.steps import (
    IGNORED,
    REFUSED,
    Affine,
    Float64Array,
    Frame,
    NotCompilable,
    Numbers,
    OneHot,
    Plan,
)
from fastinfer.runtimes.compiled.trees import DecisionTree, GradientBoosting, RandomForest
from fastinfer.runtimes.frames import column_kind

# The final estimators compiled (exact scikit-learn classes), each from its fitted model and the
# number of features the walk found.
MODELS: dict[str, Callable[[Any, int], Model]] = {
    "LogisticRegression": Logistic,
    "DecisionTreeClassifier": DecisionTree,
    "RandomForestClassifier": RandomForest,
    "ExtraTreesClassifier": RandomForest,
    "GradientBoostingClassifier": GradientBoosting,
}


def compile_pipeline(
    estimator: Any,
    fields: list[InputField],
    *,
    frame: Frame | None = None,
    rows_step: bool = True,
) -> CompiledPipeline:
    """The compiled form of a fitted estimator whose input rows have `fields`.

    Steps before the compiled ones that are not scikit-learn's (a custom feature transformer,
    as in examples/titanic) still run, on the DataFrame `frame` builds, when `frame` is given;
    what follows them is compiled. When the first of them has `transform_rows` (and
    `rows_step`), it is given the rows themselves and no DataFrame is built: the load-time
    check then compares that with the pipeline, which calls `transform` on the DataFrame.
    Raises NotCompilable naming the first step (or column) it cannot reproduce exactly.
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
    build = MODELS.get(sklearn_class(final) or "")
    if build is None:
        raise NotCompilable(f"final step {type(final).__name__} (compiled: {', '.join(MODELS)})")
    plan = Plan(columns)
    tail: list[Affine] = []
    while transforms and (affine := _affine(transforms[-1])) is not None:
        tail.insert(0, affine)
        transforms.pop()
    plan.matrix_steps = tail
    if not transforms:
        _numbers(columns, [], plan, kinds)
    else:
        try:
            if sklearn_class(transforms[-1]) == "OneHotEncoder":  # on every column
                _encoded(columns, transforms[:-1], transforms[-1], plan, kinds)
            elif len(transforms) == 1 and sklearn_class(transforms[0]) == "ColumnTransformer":
                _column_transformer(transforms[0], plan, kinds)
            else:
                raise NotCompilable(f"step {type(transforms[-1]).__name__} before the model")
        except NotCompilable as exc:
            if frame is None or not all(hasattr(step, "transform") for step in transforms):
                raise
            plan = Plan(columns, matrix_steps=tail, prefix=transforms, why_prefix=str(exc))
            plan.rows_step = rows_step and callable(getattr(transforms[0], "transform_rows", None))
            plan.width = int(getattr(final, "n_features_in_", 0))
    return CompiledPipeline(plan, build(final, plan.width), frame)


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


def _column_transformer(ct: Any, plan: Plan, kinds: dict[str, str]) -> None:
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


def _numbers(selected: list[str], chain: list[Any], plan: Plan, kinds: dict[str, str]) -> None:
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
    plan.blocks.append(Numbers(tuple(selected), plan.width, tuple(steps)))
    plan.width += len(selected)


def _affine(step: Any) -> Affine | None:
    """An elementwise scikit-learn step as an `Affine`; None for any other step."""
    kind = sklearn_class(step)
    if _output_config(step):
        return None
    if kind == "StandardScaler":
        mean = _floats(step.mean_) if step.with_mean else None
        scale = _floats(step.scale_) if step.with_std else None
        return Affine("standard", mean, scale)
    if kind == "MinMaxScaler":
        low, high = step.feature_range
        clip = (float(low), float(high)) if step.clip else None
        return Affine("minmax", _floats(step.scale_), _floats(step.min_), clip)
    if kind == "SimpleImputer":
        statistics = np.asarray(step.statistics_)
        if not _is_nan(step.missing_values) or step.add_indicator:
            return None
        if statistics.dtype.kind not in "biuf" or np.isnan(statistics.astype(float)).any():
            return None  # a string fill, or an all-missing column the imputer drops
        return Affine("fill", statistics.astype(np.float64))
    return None


def _floats(values: Any) -> Float64Array | None:
    array = np.asarray(values)
    if array.dtype != np.float64:
        raise NotCompilable(f"fitted statistics of dtype {array.dtype}")
    return array


def _encoded(
    selected: list[str], before: list[Any], encoder: Any, plan: Plan, kinds: dict[str, str]
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
    unknown = REFUSED if handle == "error" else IGNORED
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
        plan.blocks.append(OneHot(column, table, missing, unknown))
        plan.categories[column] = list(table)
        plan.width += width


def _one_hot_table(
    column: str, categories: Any, drop: Any, kinds: dict[str, str], start: int, unknown: int
) -> tuple[dict[Any, int], int, int]:
    """Category value → absolute output column (the dropped category: `IGNORED`), what a
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
            positions.append(IGNORED)
        else:
            positions.append(next_column)
            next_column += 1
    table = dict(zip(present, positions, strict=False))
    if len(table) != len(present):
        raise NotCompilable(f"column {column!r} has categories equal to each other")
    missing = positions[-1] if len(present) < len(values) else unknown
    return table, missing, next_column - start


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
