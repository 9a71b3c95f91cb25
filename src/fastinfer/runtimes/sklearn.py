"""scikit-learn estimators and pipelines saved with joblib."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import joblib
import numpy as np
import pandas as pd

from fastinfer.modelspec import InputField
from fastinfer.runtimes.base import Prediction, Row, Runtime
from fastinfer.runtimes.outputs import class_labels, classifier_predictions, regressor_predictions


def _floats(values: list[Any]) -> Any:
    try:
        return np.array(values, dtype=np.float64)
    except TypeError:  # None among them: missing → NaN, as pandas reads an empty CSV cell
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _ints(values: list[Any]) -> Any:
    return np.array(values, dtype=np.int64)


def _column_converter(field: InputField) -> Callable[[list[Any]], Any] | None:
    """How to turn one column's values into an array; None leaves it to pandas' inference."""
    if field.shape is not None:
        return None
    kind: str = field.type
    if field.allowed is not None:
        kinds = {type(a) for a in field.allowed}
        kind = "integer" if kinds == {int} else "number" if kinds <= {int, float} else "other"
    if kind == "number" or (kind == "integer" and field.nullable):
        return _floats
    if kind == "integer":
        return _ints
    return None


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

    def bind_schema(self, fields: list[InputField]) -> None:
        self._converters = {field.name: _column_converter(field) for field in fields}

    def predict(self, rows: list[Row], columns: list[str]) -> list[Prediction]:
        features: Any = self._frame(rows, columns)
        if not self._wants_frame:
            features = features.to_numpy()
        if self._labels is not None:
            probabilities = np.asarray(self.estimator.predict_proba(features), dtype=float)
            return classifier_predictions(probabilities, self._labels)
        return regressor_predictions(self.estimator.predict(features))

    def _frame(self, rows: list[Row], columns: list[str]) -> pd.DataFrame:
        """Rows → DataFrame, column by column with the dtype each field implies.

        Typed arrays build about twice as fast as `from_records` on a few hundred rows, and give
        the dtypes a CSV of the same data would (int64, float64 with NaN for missing, strings).
        """
        converters = getattr(self, "_converters", {})
        data = {}
        for name in columns:
            values = [row[name] for row in rows]
            convert = converters.get(name)
            data[name] = convert(values) if convert is not None else values
        return pd.DataFrame(data, columns=columns, copy=False)

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
