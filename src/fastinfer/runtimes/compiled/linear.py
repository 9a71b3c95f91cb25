"""A fitted `LogisticRegression` as NumPy: its decision function, link and label.

The decision function is `X @ coef_.T + intercept_` (the same transposed view sklearn multiplies
by), then `scipy.special.expit` and `[1 - p, p]` for two classes or sklearn's softmax for more;
the label is the decision function's sign or first maximum, as `LogisticRegression.predict`
takes it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import expit

from fastinfer.runtimes.compiled.steps import Float64Array, NotCompilable


class Logistic:
    """The compiled `LogisticRegression` (binary or multinomial)."""

    name = "LogisticRegression"

    def __init__(self, model: Any, width: int) -> None:
        coef, intercept = model.coef_, np.asarray(model.intercept_)
        if not isinstance(coef, np.ndarray) or coef.dtype != np.float64 or coef.ndim != 2:
            raise NotCompilable("LogisticRegression coefficients that are not a float64 matrix")
        if coef.shape[1] != width:
            raise NotCompilable(f"the model reads {coef.shape[1]} features, the walk found {width}")
        classes = len(model.classes_)
        if coef.shape[0] != (1 if classes == 2 else classes) or intercept.dtype != np.float64:
            raise NotCompilable("LogisticRegression coefficients that do not fit its classes")
        self._coef_t = coef.T  # the view LogisticRegression.decision_function multiplies by
        self._intercept = intercept
        self._binary = coef.shape[0] == 1

    def __call__(self, matrix: Float64Array) -> tuple[Float64Array, list[int]]:
        """Probabilities as `predict_proba` gives them and each row's class column as
        `predict` picks it."""
        scores = matrix @ self._coef_t + self._intercept
        if self._binary:
            scores = scores.reshape(-1)
            chosen = (scores > 0).astype(np.intp).tolist()
            positive = expit(scores, out=scores)
            return np.stack([1 - positive, positive], axis=1), chosen
        chosen = scores.argmax(axis=1).tolist()
        return softmax(scores), chosen


def softmax(scores: Float64Array) -> Float64Array:
    """`sklearn.utils.extmath.softmax(scores, copy=False)` for NumPy arrays, step for step."""
    scores -= scores.max(axis=1).reshape((-1, 1))
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=1).reshape((-1, 1))
    return scores
