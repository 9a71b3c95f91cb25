"""A scikit-learn classifier's answer: `predict_proba` for the probabilities, its own `predict`
for the label.

The label is never re-derived from the probabilities: an `SVC(probability=True)` predicts from
its decision function, which Platt scaling can disagree with, and a logistic regression's
`predict` thresholds its decision function, so a probability of exactly 0.5 can still be
class 1. What it costs is kept small without changing any answer:

- A `Pipeline` (not a subclass, which may override `predict`) is, by its own definition
  (`Pipeline.predict` and `Pipeline.predict_proba`), its steps' `transform` in order, skipping
  `None` and `"passthrough"`, then the final estimator's method. The steps therefore run once
  and only the final estimator is asked twice (nested pipelines are unrolled the same way).
- scikit-learn's forests (`RandomForestClassifier`, `ExtraTreesClassifier`, exactly those classes,
  with one output) define `predict` as `classes_.take(argmax(predict_proba(X)))`: there the
  label is that rule, applied to the probabilities already computed (the first column wins a
  tie, as `numpy.argmax` does), rather than a second pass over every tree.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.pipeline import Pipeline

from fastinfer.runtimes.outputs import ClassIndex, first_most_probable

# (module, class) of the estimators whose `predict` is `classes_.take(argmax(predict_proba))`,
# named rather than imported (sklearn.ensemble is slow to import and most models lack it).
_ARGMAX_PREDICT = {
    ("sklearn.ensemble._forest", "RandomForestClassifier"),
    ("sklearn.ensemble._forest", "ExtraTreesClassifier"),
}


class SklearnClassifier:
    """Calls a fitted classifier (or pipeline) for probabilities and its own labels at once."""

    __slots__ = ("_argmax", "_classes", "_final", "_steps")

    def __init__(self, estimator: Any) -> None:
        self._steps, self._final = _unrolled(estimator)
        cls = type(self._final)
        forest = (cls.__module__, cls.__qualname__) in _ARGMAX_PREDICT
        self._argmax = forest and self._final.n_outputs_ == 1
        self._classes = ClassIndex(list(estimator.classes_), "the estimator's predict")

    def __call__(self, features: Any) -> tuple[npt.NDArray[np.floating[Any]], list[int]]:
        """The probabilities (as `predict_proba` returns them) and each row's class column."""
        for step in self._steps:
            features = step.transform(features)
        probabilities = np.asarray(self._final.predict_proba(features))
        if self._argmax:
            return probabilities, first_most_probable(probabilities)
        predicted = self._final.predict(features)
        return probabilities, self._classes.columns(predicted, len(probabilities))


def _unrolled(estimator: Any) -> tuple[list[Any], Any]:
    """The transforms a plain Pipeline applies before its final estimator, and that estimator."""
    steps: list[Any] = []
    while type(estimator) is Pipeline and estimator.steps:
        *head, (_, final) = estimator.steps
        if final is None or (isinstance(final, str) and final == "passthrough"):
            break  # no estimator at the end: leave the pipeline whole (it cannot predict)
        steps.extend(
            step
            for _, step in head
            if step is not None and not (isinstance(step, str) and step == "passthrough")
        )
        estimator = final
    return steps, estimator
