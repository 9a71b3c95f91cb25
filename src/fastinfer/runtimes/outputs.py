"""Turning a framework's raw outputs into the predictions clients see."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from fastinfer.model.spec import OutputSpec
from fastinfer.runtimes.base import Prediction


def class_labels(classes: Sequence[Any], output: OutputSpec) -> list[str]:
    """The client-facing label of each class value, mapped through `output.labels`."""
    mapping = output.labels or {}
    return [mapping.get(_class_key(value), _class_key(value)) for value in classes]


def index_labels(width: int, output: OutputSpec, model: str) -> list[str]:
    """Labels of a model whose classes are the indices 0..width-1 of its probability columns,
    through `output.labels`, whose keys must be such indices (`model` names it in errors)."""
    stray = sorted(set(output.labels or {}) - {str(i) for i in range(width)})
    if stray:
        raise ValueError(
            f"output.labels key(s) {', '.join(stray)} are not class indices of the {model}, "
            f"whose {width} classes are 0..{width - 1}"
        )
    return class_labels(list(range(width)), output)


def _class_key(value: Any) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    return str(value)


def classifier_predictions(
    probabilities: npt.NDArray[np.floating[Any]], labels: list[str], chosen: Sequence[int]
) -> list[Prediction]:
    """One `{"label", "probabilities"}` per row, exactly as the model gave them.

    `chosen` is each row's class index by the model's own decision rule (its `predict`, its label
    output, or its library's documented rule), never re-derived here; the probabilities are the
    model's values unrounded (float32 is widened to float64, which is exact).
    """
    values = np.asarray(probabilities, dtype=np.float64).tolist()
    return [
        {"label": labels[index], "probabilities": dict(zip(labels, row))}  # noqa: B905 - hot
        for index, row in zip(chosen, values)  # noqa: B905 - same length by construction
    ]


def first_most_probable(probabilities: npt.NDArray[Any]) -> list[int]:
    """Each row's most probable class, the lowest index winning a tie: `numpy.argmax`.

    It is the decision rule of LightGBM's `predict`, of XGBoost's multi-class `predict`, of
    scikit-learn's forests and of ONNX's ArgMax; only runtimes whose model has that rule (or no
    rule of its own) use it.
    """
    return [int(i) for i in np.asarray(probabilities).argmax(axis=1).tolist()]


class ClassIndex:
    """A model's class values → their probability columns, to place the classes its own
    `predict` (or label output) answers; keyed by the value's string, as labels are."""

    __slots__ = ("_columns", "_source")

    def __init__(self, classes: Sequence[Any], source: str) -> None:
        self._columns = {_class_key(value): i for i, value in enumerate(classes)}
        self._source = source  # what gives the classes, for errors: "the estimator's predict"

    def columns(self, predicted: Any, rows: int) -> list[int]:
        """The column of each predicted class value (`predicted`: a sequence or an array)."""
        values = predicted.tolist() if isinstance(predicted, np.ndarray) else list(predicted)
        if len(values) != rows:
            raise ValueError(f"{self._source} gave {len(values)} labels for {rows} rows")
        columns = self._columns
        try:
            return [columns[_class_key(value)] for value in values]
        except KeyError as exc:
            known = ", ".join(columns)
            raise ValueError(
                f"{self._source} answered class {exc.args[0]!r}, which is none of the classes "
                f"its probabilities are for ({known})"
            ) from None


def regressor_predictions(values: npt.NDArray[Any]) -> list[Prediction]:
    return [{"value": float(v)} for v in np.asarray(values, dtype=float).reshape(-1)]
