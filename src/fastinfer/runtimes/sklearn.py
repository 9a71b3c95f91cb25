"""scikit-learn estimators and pipelines saved with skops or joblib.

A skops file (a zip archive) is read by skops, which rebuilds only the types it trusts, so it
loads without a sha256 pin; types beyond skops's defaults (and `SAFE_SKOPS_TYPES`) load only
when the config lists them in `runtime_options.trusted_types`. A joblib pickle can run any code,
so it must be pinned (or explicitly trusted). Without declared inputs, the schema is inferred
from how the fitted pipeline reads each column: encoders give categories, scalers and imputers
give numbers (`sklearn_schema.py`).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import joblib
import pandas as pd

from fastinfer.model.spec import InputField, OutputSpec
from fastinfer.observability.logging import get_logger
from fastinfer.runtimes.base import Prediction, Row, Runtime
from fastinfer.runtimes.compiled import (
    CompiledPipeline,
    NotCompilable,
    check_compiled,
    check_rows,
    compile_pipeline,
)
from fastinfer.runtimes.detect import UntrustedTypesError
from fastinfer.runtimes.frames import build_frame, column_builders
from fastinfer.runtimes.outputs import class_labels, classifier_predictions, regressor_predictions
from fastinfer.runtimes.sklearn_classify import SklearnClassifier
from fastinfer.runtimes.sklearn_schema import inferred_fields

_ZIP_MAGIC = b"PK\x03\x04"  # a skops file is a zip archive; a joblib pickle starts with 0x80
# Types skops reports as untrusted but builds without calling them. `numpy.dtype` (a fitted
# SimpleImputer holds one) is rebuilt by skops's DTypeNode as the `.dtype` of an array skops
# itself read (np.load with allow_pickle=False): no named type is called, so trusting it runs no
# code from the file.
SAFE_SKOPS_TYPES = frozenset({"numpy.dtype"})
REFERENCE_FILENAME = "reference.json"  # monitoring's reference statistics, read for the check
log = get_logger("fastinfer.runtimes.sklearn")


class SklearnRuntime(Runtime):
    name = "sklearn"

    option_keys = ("trusted_types", "compile")
    builds_before_fork = True  # no sessions or threads of its own (native pools: forksafe.py)

    def __init__(
        self,
        output: OutputSpec,
        options: Mapping[str, Any] | None = None,
        *,
        directory: Path | None = None,
    ) -> None:
        super().__init__(output, options, directory=directory)
        trusted = self.options.get("trusted_types", [])
        if not isinstance(trusted, list) or not all(isinstance(t, str) and t for t in trusted):
            raise ValueError(
                "runtime option trusted_types must be a list of fully qualified type names, "
                f"e.g. [mypackage.features.AgeBinner]; got {trusted!r}"
            )
        self._trusted_types: list[str] = trusted
        compile_option = self.options.get("compile", True)
        if not isinstance(compile_option, bool):
            raise ValueError(
                f"runtime option compile must be true or false; got {compile_option!r}"
            )
        self._compile = compile_option
        self._compiled: CompiledPipeline | None = None
        self._compiled_state: dict[str, Any] = {
            "compiled": False,
            "compiled_reason": "not checked yet",
        }

    def needs_trust(self, data: bytes) -> bool:
        return not data.startswith(_ZIP_MAGIC)  # skops builds only trusted types; pickles run code

    def load(self, data: bytes) -> None:
        if data.startswith(_ZIP_MAGIC):
            self.estimator: Any = _load_skops(data, self._trusted_types)
        elif self._trusted_types:
            raise ValueError(
                "runtime option trusted_types applies to skops artefacts, but this artefact is a "
                "joblib pickle; save the model with skops.io.dump(model, 'model.skops') or drop "
                "the option"
            )
        else:
            self.estimator = joblib.load(io.BytesIO(data))  # sha256 verified by the caller
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
            self._classify = SklearnClassifier(self.estimator)

    def bind_schema(self, fields: list[InputField]) -> None:
        self._columns = column_builders(fields)
        self._fields = fields

    def prepare(self, examples: list[Row], columns: list[str]) -> None:
        """Compile the pipeline (`runtimes/compiled/`) and keep the compiled path only
        if it gives the pipeline's own answers on the example, reference and synthetic rows."""
        self._compiled = None
        details: dict[str, Any] = {}
        reason = self._compile_refusal(examples, columns, details)
        if reason is None:
            self._compiled_state = {"compiled": True, **details}
            log.info("sklearn_compiled", **details)
        else:
            self._compiled_state = {"compiled": False, "compiled_reason": reason}
            log.info("sklearn_not_compiled", reason=reason)

    def _compile_refusal(
        self, examples: list[Row], columns: list[str], details: dict[str, Any]
    ) -> str | None:
        """Why the compiled path stays off (None: it is on, and `details` say how it was
        checked)."""
        if not self._compile:
            return "turned off by runtime_options.compile: false"
        fields = getattr(self, "_fields", None)
        if self._labels is None or fields is None:
            return "only classifiers are compiled"
        if columns != [f.name for f in fields]:
            return "the row columns are not the schema's fields"

        def frame(rows: Sequence[Row]) -> pd.DataFrame:
            return self._frame(list(rows), columns)

        try:
            compiled = compile_pipeline(self.estimator, fields, frame=frame)
        except NotCompilable as exc:
            return f"not compilable: {exc}"
        reference = self.directory / REFERENCE_FILENAME if self.directory else None
        rows = check_rows(compiled, fields, examples, reference)

        def pipeline(batch: list[Row]) -> tuple[Any, list[int]]:
            return self._classify(self._frame(batch, columns))

        result = check_compiled(compiled, pipeline, rows)
        if result.mismatch is not None and compiled.plan.rows_step:
            # The step's own `transform_rows` is not its `transform`: run it on the frame.
            details["compiled_rows_step"] = f"not used, it differs: {result.mismatch}"
            compiled = compile_pipeline(self.estimator, fields, frame=frame, rows_step=False)
            result = check_compiled(compiled, pipeline, rows)
        if result.mismatch is not None:
            return f"the compiled path differs from the pipeline: {result.mismatch}"
        self._compiled = compiled
        details.update(
            compiled_steps=compiled.description,
            compiled_check=f"{result.rows} rows in {result.batches} batches, "
            f"largest probability difference {result.max_difference:.3g}",
        )
        return None

    def describe(self) -> dict[str, Any]:
        return dict(self._compiled_state)

    def predict(self, rows: list[Row], columns: list[str]) -> list[Prediction]:
        compiled = self._compiled
        if compiled is not None and self._labels is not None:
            answer = compiled(rows)
            if answer is not None:  # None: a batch the pipeline must answer (or refuse) itself
                return classifier_predictions(answer[0], self._labels, answer[1])
        features: Any = self._frame(rows, columns)
        if not self._wants_frame:
            features = features.to_numpy()
        if self._labels is not None:  # probabilities from predict_proba, the label from predict
            probabilities, chosen = self._classify(features)
            return classifier_predictions(probabilities, self._labels, chosen)
        return regressor_predictions(self.estimator.predict(features))

    def _frame(self, rows: list[Row], columns: list[str]) -> pd.DataFrame:
        """Rows → DataFrame, each column with the dtype its field gives (`runtimes/frames.py`):
        the same for a row whoever shares its batch, and what a CSV of the data would give
        (int64, float64 with NaN for missing, strings). Typed arrays also build about twice as
        fast as `from_records` on a few hundred rows."""
        return build_frame(rows, columns, getattr(self, "_columns", {}))

    def derived_inputs(self) -> list[InputField] | None:
        names = getattr(self.estimator, "feature_names_in_", None)
        if names is not None:
            return inferred_fields(self.estimator, [str(n) for n in names])
        count = getattr(self.estimator, "n_features_in_", None)
        if count is not None:
            return [InputField(name=f"x{i}", type="number") for i in range(int(count))]
        return None

    def output_labels(self) -> list[str] | None:
        return self._labels


def _load_skops(data: bytes, trusted: list[str]) -> Any:
    """The object in a skops file, refusing any type neither skops nor the config trusts.

    skops is imported here, for skops files only: importing it imports every scikit-learn
    estimator (about a second), which a joblib pickle does not need."""
    import skops.io

    try:
        found = skops.io.get_untrusted_types(data=data)
    except Exception as exc:  # a zip that is not a skops file: skops raises many kinds
        raise ValueError(
            f"the artefact is a zip archive but not a readable skops file ({exc})"
        ) from None
    refused = sorted(set(found) - set(trusted) - SAFE_SKOPS_TYPES)
    if refused:
        raise UntrustedTypesError(refused)
    return skops.io.loads(data, trusted=found)
