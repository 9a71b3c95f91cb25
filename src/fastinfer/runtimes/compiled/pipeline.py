"""The compiled pipeline: the compiled steps' features, then the compiled model."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fastinfer.runtimes.base import Row
from fastinfer.runtimes.compiled.steps import Features, Float64Array, Frame, Plan

# The compiled final estimator: the features → (probabilities, class columns), or None where the
# pipeline must answer (the tree models' float32 features that are not finite).
Model = Callable[[Float64Array], tuple[Float64Array, list[int]] | None]


class CompiledPipeline:
    """Rows → (probabilities, class columns), or None where the pipeline must answer."""

    def __init__(self, plan: Plan, model: Model, frame: Frame | None = None) -> None:
        self.plan = plan
        self.model = model
        self.features = Features(plan, frame)
        self.description = plan.describe()
        name = getattr(model, "name", None)
        if name:
            self.description += f" → {name}"

    def __call__(self, rows: Sequence[Row]) -> tuple[Float64Array, list[int]] | None:
        """Probabilities as `predict_proba` gives them and each row's class column as `predict`
        picks it; None where the pipeline must answer itself."""
        matrix = self.features(rows)
        if matrix is None:
            return None
        return self.model(matrix)
