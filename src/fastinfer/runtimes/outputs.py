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
    probabilities: npt.NDArray[np.floating[Any]], labels: list[str]
) -> list[Prediction]:
    """One `{"label", "probabilities"}` per row; the label is the most probable class."""
    best = probabilities.argmax(axis=1).tolist()  # Python ints: indexing with numpy ints is slow
    rounded = probabilities.round(6).tolist()
    return [
        {"label": labels[index], "probabilities": dict(zip(labels, row))}  # noqa: B905 - hot
        for index, row in zip(best, rounded)  # noqa: B905 - same length by construction
    ]


def regressor_predictions(values: npt.NDArray[Any]) -> list[Prediction]:
    return [{"value": float(v)} for v in np.asarray(values, dtype=float).reshape(-1)]
