"""What the gradient-boosted tree runtimes (XGBoost, LightGBM) have in common.

Both read a booster from the framework's own model file, which names the features, their types
and (for categorical features) their categories, so the input fields are derived from the model
rather than declared. Both take a thread count as a runtime option, and both predict fastest on
a NumPy matrix built column by column from the rows, with category values encoded to the codes
the booster was trained with. That much is the same code, and lives here once; reading the model
file, checking the objective and calling the framework stay in each runtime's module.

Nothing here imports a framework: a runtime's module is imported only when a model uses it.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fastinfer.model.spec import FieldType, InputField, OutputSpec
from fastinfer.runtimes.base import Prediction, Row, Runtime, whole_number_option
from fastinfer.runtimes.outputs import (
    classifier_predictions,
    first_most_probable,
    regressor_predictions,
)

Category = str | int | float | bool


@dataclass(frozen=True, slots=True)
class Feature:
    """One booster column: its derived field and how its values become the booster's floats."""

    field: InputField
    codes: dict[Category, int] | None  # category → the code it was trained as; None: numeric

    def check(self, declared: InputField) -> None:
        """A declared field must send values this feature can read (derived ones always do)."""
        if self.codes is None:
            if declared.type == "string":
                raise ValueError(
                    f"input field {declared.name!r} is a string but the booster reads a number "
                    "there (declare it integer, number or boolean)"
                )
            return
        types = {declared.type, self.field.type}
        if declared.type != "any" and len(types) > 1 and not types <= {"integer", "number"}:
            shown = ", ".join(map(repr, self.field.allowed or []))
            raise ValueError(
                f"input field {declared.name!r} is declared {declared.type} but the booster's "
                f"categories there are {self.field.type} values ({shown}); declare it "
                f"{self.field.type}, or leave inputs out to derive them"
            )

    def encode(self, values: list[Any]) -> list[Any]:
        """Values → what NumPy turns into floats; missing values and unseen categories → NaN
        (as LightGBM's own DataFrame path does)."""
        if self.codes is None:
            return values  # numbers and booleans; None becomes NaN in the float matrix
        codes = self.codes
        return [codes.get(v, math.nan) if v is not None else math.nan for v in values]


def categorical_feature(name: str, categories: list[Category]) -> Feature:
    """A feature whose field takes the category values themselves, coded by their position.

    Nullable, as every booster field is: a booster sends a missing value down each split's
    learned branch.
    """
    field_type: FieldType
    if all(isinstance(c, bool) for c in categories):
        field_type = "boolean"
    elif all(isinstance(c, str) for c in categories):
        field_type = "string"
    elif all(isinstance(c, int) and not isinstance(c, bool) for c in categories):
        field_type = "integer"
    elif all(isinstance(c, int | float) and not isinstance(c, bool) for c in categories):
        field_type = "number"
    else:
        field_type = "any"
    field = InputField(name=name, type=field_type, nullable=True, allowed=list(categories))
    return Feature(field, {c: code for code, c in enumerate(categories)})


class TreeRuntime(Runtime):
    """A booster over `Feature`s: the schema check, the input matrix and the predictions.

    A subclass's `load` sets `_features`, `_labels` (None: a regressor) and `_binary` (the
    booster gives one probability per row, the positive class's), and `_raw_predict` runs the
    booster on the matrix.
    """

    threads_option: ClassVar[str]  # the runtime option that sets the prediction threads
    threads_note: ClassVar[str] = ""  # what 0 means, for the option's error message
    names_note: ClassVar[str] = ""  # a hint when fields lack a feature's name
    matrix_dtype: ClassVar[type[np.floating[Any]]] = np.float64

    def __init__(
        self,
        output: OutputSpec,
        options: Mapping[str, Any] | None = None,
        *,
        directory: Path | None = None,
    ) -> None:
        super().__init__(output, options, directory=directory)
        self._threads: int = whole_number_option(
            self.options, self.threads_option, default=1, minimum=0, note=self.threads_note
        )
        self._labels: list[str] | None = None
        self._binary = False
        self._features: list[Feature] = []

    def bind_schema(self, fields: list[InputField]) -> None:
        """Every booster feature needs a field of a type it can read; extra fields are ignored.

        A field matches the feature of its name, or else the feature the framework made of that
        name (`feature_name_of`: LightGBM trained on "a b" names the feature "a_b"); the
        feature then reads the field's values under the field's name.
        """
        by_name = {f.name: f for f in fields}
        names = {feature.field.name for feature in self._features}
        rewritten: dict[str, list[InputField]] = {}
        for field in fields:
            if field.name not in names:
                rewritten.setdefault(self.feature_name_of(field.name), []).append(field)
        matched = [
            by_name.get(f.field.name) or _only(rewritten.get(f.field.name, []))
            for f in self._features
        ]
        missing = [f.field.name for f, m in zip(self._features, matched, strict=True) if not m]
        if missing:
            raise ValueError(
                f"the booster's feature(s) {', '.join(missing)} have no input field "
                f"(fields: {', '.join(by_name) or 'none'}); name the inputs as the model does"
                + self.names_note
            )
        for index, (feature, declared) in enumerate(zip(self._features, matched, strict=True)):
            assert declared is not None
            feature.check(declared)
            if declared.name != feature.field.name:
                renamed = feature.field.model_copy(update={"name": declared.name})
                self._features[index] = replace(feature, field=renamed)

    @staticmethod
    def feature_name_of(column: str) -> str:
        """The feature name the framework gives a column it was trained on (as it is here)."""
        return column

    def predict(self, rows: list[Row], columns: list[str]) -> list[Prediction]:
        if not rows:
            return []
        matrix = np.empty((len(rows), len(self._features)), dtype=self.matrix_dtype)
        for index, feature in enumerate(self._features):
            name = feature.field.name
            try:
                matrix[:, index] = feature.encode([row[name] for row in rows])
            except (TypeError, ValueError) as exc:
                raise ValueError(f"feature {name!r}: not a number ({exc})") from None
        raw = np.asarray(self._raw_predict(matrix))  # the booster's own dtype, unrounded
        if self._labels is None:
            return regressor_predictions(raw)
        if self._binary:  # [1-p, p] computed in the booster's dtype, as the library's own
            positive = raw.reshape(-1)  # predict_proba does (XGBoost: float32)
            raw = np.column_stack([1.0 - positive, positive])
        return classifier_predictions(raw, self._labels, self._decide(raw))

    def _decide(self, probabilities: np.ndarray[Any, Any]) -> list[int]:
        """Each row's class by the library's own `predict` rule; by default (LightGBM's
        `LGBMClassifier.predict`, and multi-class XGBoost) the first most probable class."""
        return first_most_probable(probabilities)

    @abstractmethod
    def _raw_predict(self, matrix: np.ndarray[Any, Any]) -> Any:
        """The booster's predictions for the matrix's rows, as the framework returns them."""

    def input_dtypes(self, fields: list[InputField]) -> dict[str, np.dtype[Any]]:
        """Every value reaches the booster in the matrix's float type (XGBoost's float32)."""
        return {f.name: np.dtype(self.matrix_dtype) for f in fields}

    def derived_inputs(self) -> list[InputField] | None:
        return [feature.field for feature in self._features]

    def output_labels(self) -> list[str] | None:
        return self._labels


def _only(fields: list[InputField]) -> InputField | None:
    return fields[0] if len(fields) == 1 else None
