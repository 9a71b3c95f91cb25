"""scikit-learn estimators and pipelines saved with joblib."""

from __future__ import annotations

import io
from typing import Any

import joblib
import numpy as np
import pandas as pd

from fastinfer.modelspec import InputField
from fastinfer.runtimes.base import Prediction, Row, Runtime
from fastinfer.runtimes.outputs import class_labels, classifier_predictions, regressor_predictions


class SklearnRuntime(Runtime):
    name = "sklearn"

    def load(self, data: bytes) -> None:
        self.estimator: Any = joblib.load(io.BytesIO(data))  # sha256 verified by the caller
        if not hasattr(self.estimator, "predict"):
            raise TypeError(
                f"the artefact holds a {type(self.estimator).__name__}, not an estimator"
            )
        self._wants_frame = hasattr(self.estimator, "feature_names_in_")
        self._labels: list[str] | None = None
        if self.output.kind == "classifier":
            if not hasattr(self.estimator, "predict_proba"):
                raise TypeError("output kind is classifier but the estimator has no predict_proba")
            self._labels = class_labels(list(self.estimator.classes_), self.output)

    def predict(self, rows: list[Row], columns: list[str]) -> list[Prediction]:
        features: Any = pd.DataFrame.from_records(rows, columns=columns)
        if not self._wants_frame:
            features = features.to_numpy()
        if self._labels is not None:
            probabilities = np.asarray(self.estimator.predict_proba(features), dtype=float)
            return classifier_predictions(probabilities, self._labels)
        return regressor_predictions(self.estimator.predict(features))

    def derived_inputs(self) -> list[InputField] | None:
        names = getattr(self.estimator, "feature_names_in_", None)
        if names is not None:
            return [InputField(name=str(n)) for n in names]
        count = getattr(self.estimator, "n_features_in_", None)
        if count is not None:
            return [InputField(name=f"x{i}", type="number") for i in range(int(count))]
        return None

    def output_labels(self) -> list[str] | None:
        return self._labels
