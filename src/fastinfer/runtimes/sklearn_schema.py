"""The row schema of a fitted scikit-learn pipeline, inferred from how it reads each column:
encoders give categories, scalers and imputers give numbers.

`_consume(steps, columns)` says how a chain of fitted steps reads the given input columns,
following the data: a Pipeline's steps in order, a ColumnTransformer's column routing, then
what each transformer implies. Only scikit-learn's own classes are interpreted (by exact class
name: a subclass may do anything); anything else leaves its columns unknown, which keeps
today's fallback (type any). Inference never fails a load: any surprise falls back too.

Apart from the runtime (`sklearn.py`, loading and predicting) because it reads a pipeline's
structure and nothing else: the runtime asks it for the derived inputs, and `fastinfer init`
for the encoders' categories.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

from fastinfer.model.spec import FieldType, InputField
from fastinfer.runtimes.compiled import sklearn_class as _sklearn_class

_ENCODERS = {"OneHotEncoder", "OrdinalEncoder", "TargetEncoder"}
_IMPUTERS = {"SimpleImputer", "KNNImputer", "IterativeImputer"}
# Numeric transformers with one output column per input column (NaN passes through them).
_ELEMENTWISE = {
    "StandardScaler",
    "MinMaxScaler",
    "MaxAbsScaler",
    "RobustScaler",
    "PowerTransformer",
    "QuantileTransformer",
    "Normalizer",
    "Binarizer",
}
# Numeric transformers that mix their columns (so what follows them says nothing about inputs).
_NUMERIC = {"PCA", "TruncatedSVD", "PolynomialFeatures", "SplineTransformer", "KBinsDiscretizer"}


@dataclass(frozen=True, slots=True)
class _Column:
    """What one input column must hold for the pipeline to read it."""

    type: FieldType = "any"
    allowed: tuple[Any, ...] | None = None
    nullable: bool = False


_NUMBER = _Column("number")
_DROPPED = _Column("any", nullable=True)  # the model never reads it


def inferred_fields(estimator: Any, names: list[str]) -> list[InputField]:
    """Each named input column as the pipeline reads it (type any where it cannot tell)."""
    try:
        facts = _consume([estimator], names)
    except Exception:  # inference is a convenience: an unexpected structure must not fail a load
        facts = {}
    return [_field(name, facts.get(name)) for name in names]


def _field(name: str, column: _Column | None) -> InputField:
    if column is None:
        return InputField(name=name)
    allowed = list(column.allowed) if column.allowed else None
    return InputField(name=name, type=column.type, allowed=allowed, nullable=column.nullable)


def refusing_encoder_fields(estimator: Any) -> dict[str, InputField]:
    """Column → its field as an encoder that refuses unknown values reads it, wherever one sits.

    An encoder with handle_unknown="error", fit on named columns, fails on any value but its
    categories: they are the column's true `allowed` list even where `_consume` can not follow
    the pipeline to it (a FeatureUnion, someone else's step before it). `fastinfer init` adds them
    to the derived fields. Subclasses count here (isinstance), as they always have for init.
    """
    found: dict[str, InputField] = {}
    for part in _parts(estimator):
        if not isinstance(part, OneHotEncoder | OrdinalEncoder) or part.handle_unknown != "error":
            continue
        names = getattr(part, "feature_names_in_", None)
        if names is not None:
            for name, column in _encoded(part, [str(n) for n in names]).items():
                found[name] = _field(name, column)
    return found


def _parts(estimator: Any, depth: int = 0) -> Iterator[Any]:
    """The estimator and, recursively, the fitted steps of pipelines, column transformers and
    feature unions (not following the data: every part, wherever it sits)."""
    yield estimator
    if depth > 8:
        return
    for attribute in ("steps", "transformers_", "transformer_list"):
        members = getattr(estimator, attribute, None)
        if isinstance(members, list):
            for member in members:
                if isinstance(member, tuple) and len(member) >= 2:
                    yield from _parts(member[1], depth + 1)


def _consume(steps: Sequence[Any], columns: list[str]) -> dict[str, _Column]:
    """Column → how `steps`, applied in order, read it; columns left out are unknown.

    An empty chain is the end of a ColumnTransformer branch, whose output the rest of the
    pipeline reads as numbers.
    """
    if not steps:
        return dict.fromkeys(columns, _NUMBER)
    step, rest = steps[0], steps[1:]
    if _is_passthrough(step):
        return _consume(rest, columns)
    kind = _sklearn_class(step)
    if kind == "Pipeline":
        inner = [s for _, s in step.steps if not _is_passthrough(s)]
        return _consume([*inner, *rest], columns)
    if kind == "ColumnTransformer":
        return _column_transformer(step, columns, rest)
    if kind in _ENCODERS:
        return _encoded(step, columns)
    if kind in _IMPUTERS:
        return _imputed(step, kind, columns, rest)
    if kind in _ELEMENTWISE:
        after = _consume(rest, columns)
        return {c: _Column("number", nullable=_nullable_number(after.get(c))) for c in columns}
    if kind in _NUMERIC:
        return dict.fromkeys(columns, _NUMBER)
    if not rest and hasattr(step, "predict"):
        return _predictor(step, columns)
    return {}


def _column_transformer(step: Any, columns: list[str], rest: Sequence[Any]) -> dict[str, _Column]:
    """Each branch's columns as that branch reads them; passthrough columns as `rest` does."""
    fitted_names = getattr(step, "feature_names_in_", None)
    if fitted_names is not None and [str(n) for n in fitted_names] != columns:
        return {}
    facts: dict[str, _Column] = {}
    for _, transformer, spec in step.transformers_:
        selected = _selected(spec, columns)
        if selected is None:
            continue
        if transformer == "drop":
            branch = dict.fromkeys(selected, _DROPPED)
        elif _is_passthrough(transformer):
            branch = _consume(rest, selected)
        else:
            branch = _consume([transformer], selected)
        for name, column in branch.items():
            facts[name] = _merge(facts[name], column) if name in facts else column
    return facts


def _encoded(step: Any, columns: list[str]) -> dict[str, _Column]:
    """An encoder's fitted categories are the values it knows; a missing one makes it nullable."""
    categories = getattr(step, "categories_", None)
    if not isinstance(categories, list) or len(categories) != len(columns):
        return {}
    facts = {}
    for name, values in zip(columns, categories, strict=True):
        plain = [_plain(v) for v in values]
        present = tuple(v for v in plain if not _is_missing(v))
        facts[name] = _Column(_category_type(present), present or None, len(present) < len(plain))
    return facts


def _imputed(step: Any, kind: str, columns: list[str], rest: Sequence[Any]) -> dict[str, _Column]:
    """An imputer fills NaN, so its columns are nullable; what follows it says what they hold."""
    if not _is_missing(getattr(step, "missing_values", None)):
        return {}  # it fills some other marker (e.g. -1), not the None a client sends
    numeric = kind != "SimpleImputer" or step.strategy in ("mean", "median")
    statistics = getattr(step, "statistics_", None)
    if kind == "SimpleImputer" and statistics is not None:
        numeric = numeric or np.asarray(statistics).dtype.kind in "biuf"
    one_to_one = (
        kind == "SimpleImputer"
        and not step.add_indicator
        and statistics is not None
        and len(statistics) == len(columns)
        and not any(_is_missing(_plain(s)) for s in statistics)  # an all-NaN column is dropped
    )
    after = _consume(rest, columns) if one_to_one else {}
    facts = {}
    for name in columns:
        column = after.get(name)
        if column is not None and column.allowed is not None:
            facts[name] = replace(column, nullable=True)
        else:
            facts[name] = _Column("number" if numeric else "any", nullable=True)
    return facts


def _predictor(step: Any, columns: list[str]) -> dict[str, _Column]:
    """Columns that reach a plain scikit-learn model unchanged must be numbers.

    Meta-estimators (a search, an ensemble of pipelines) hold other estimators whose reading of
    the columns is their own, and a model that takes strings or categories says so in its tags.
    """
    if _sklearn_class(step) is None:
        return {}
    if any(hasattr(value, "fit") for value in step.get_params(deep=False).values()):
        return {}
    if np.any(getattr(step, "is_categorical_", None) or False):  # HistGradientBoosting
        return {}
    tags = step.__sklearn_tags__().input_tags
    if tags.string or tags.categorical or tags.dict:
        return {}
    return dict.fromkeys(columns, _Column("number", nullable=bool(tags.allow_nan)))


def _selected(spec: Any, columns: list[str]) -> list[str] | None:
    """The input columns a ColumnTransformer entry selects (None when it cannot tell)."""
    if isinstance(spec, str):
        return None  # a single column as a 1-D array: text vectorisers, not interpreted here
    if isinstance(spec, slice):
        if isinstance(spec.start, str) or isinstance(spec.stop, str):
            return None
        return columns[spec]
    items = spec.tolist() if isinstance(spec, np.ndarray) else list(spec)
    if all(isinstance(i, bool) for i in items) and len(items) == len(columns):
        return [c for c, keep in zip(columns, items, strict=True) if keep]
    if all(isinstance(i, str) for i in items) and set(items) <= set(columns):
        return list(items)
    if all(isinstance(i, int) and not isinstance(i, bool) for i in items):
        return [columns[i] for i in items]
    return None


def _merge(first: _Column, second: _Column) -> _Column:
    """One column read by two branches: the stricter reading, when the two agree on a type."""
    if second in (first, _DROPPED):
        return first
    if first == _DROPPED:
        return second
    nullable = first.nullable and second.nullable
    for categorical, other in ((first, second), (second, first)):
        if categorical.allowed is not None and other.allowed is None:
            numeric = categorical.type in ("integer", "number") and other.type == "number"
            if numeric or other.type == categorical.type:
                return replace(categorical, nullable=nullable)
    if first.allowed is None and second.allowed is None and first.type == second.type:
        return replace(first, nullable=nullable)
    return _Column("any", nullable=nullable)


def _nullable_number(column: _Column | None) -> bool:
    return column is not None and column.type == "number" and column.nullable


def _category_type(values: tuple[Any, ...]) -> FieldType:
    if values and all(isinstance(v, bool) for v in values):
        return "boolean"
    if values and all(isinstance(v, str) for v in values):
        return "string"
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "integer"
    if values and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return "number"
    return "any"


def _is_passthrough(step: Any) -> bool:
    """`None`/'passthrough' in a Pipeline, and what ColumnTransformer makes of 'passthrough'."""
    if step is None or (isinstance(step, str) and step == "passthrough"):
        return True
    return _sklearn_class(step) == "FunctionTransformer" and step.func is None


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
