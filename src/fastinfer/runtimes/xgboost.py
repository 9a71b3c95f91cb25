"""XGBoost boosters in XGBoost's own model formats (JSON or UBJSON), never pickles.

A native model file is data: loading it runs no Python, so an unpinned file needs no trust. The
booster's feature names and types are the schema, and its objective decides what a prediction
is, checked against `output.kind` at load so a mismatch fails before the first request.

XGBoost parallelises with OpenMP, whose thread pool does not survive a fork: a worker forked
after the parent ran a multi-threaded region hangs in its first prediction. `load` (which runs
before the fork) therefore reads the file with one thread, and `start` sets `nthread` in the
worker. Predictions go through `inplace_predict` on a float32 NumPy matrix, about 7x faster than
on a DataFrame; categorical values are encoded to the codes the booster was trained with.
What this shares with the LightGBM runtime (fields, schema check, matrix) is in `trees.py`.
"""

from __future__ import annotations

import json
import re
from itertools import pairwise
from typing import Any

import numpy as np
import xgboost as xgb

from fastinfer.model.spec import FieldType, InputField
from fastinfer.runtimes.outputs import index_labels
from fastinfer.runtimes.trees import Category, Feature, TreeRuntime, categorical_feature

_PICKLE_MESSAGE = (
    "the xgboost artefact is a Python pickle (joblib/pickle), which the xgboost runtime does not "
    "load; save the booster in XGBoost's own format instead: booster.save_model('model.json') "
    "(or model.ubj; for an XGBClassifier/XGBRegressor: model.save_model('model.json'))"
)
_XGBOOST_ERROR_PREFIX = re.compile(r"^\[[\d:]+\] \S+:\d+: ")
# Objectives whose prediction is one number per row (a value, a count, a time, a score).
_REGRESSOR_PREFIXES = ("reg:", "count:", "survival:", "rank:")
_CLASSIFIER_HINTS = {
    "multi:softmax": "it predicts class indices without probabilities; retrain with "
    "objective multi:softprob (same model, probabilities per class)",
    "binary:logitraw": "it predicts raw margins, not probabilities; retrain with "
    "objective binary:logistic",
    "binary:hinge": "it predicts 0/1 without probabilities; retrain with objective binary:logistic",
}
_NUMERIC_TYPES: dict[str, FieldType] = {"int": "integer", "i": "boolean"}  # others: number


class XGBoostRuntime(TreeRuntime):
    name = "xgboost"

    threads_option = "nthread"
    option_keys = (threads_option,)
    threads_note = " (0: all cores)"
    matrix_dtype = np.float32

    def needs_trust(self, data: bytes) -> bool:
        """JSON loads unpinned: its parser fails cleanly on bad input. UBJSON needs a pin:
        corrupted UBJ files were seen to crash XGBoost's parser (5 in 40 fuzzed files)."""
        if data[:1] == b"\x80":
            return False  # a pickle: `load` refuses it without opening it
        return data.lstrip()[:2] != b'{"'

    def load(self, data: bytes) -> None:
        """Read the booster single-threaded (this runs before the fork) and check its objective."""
        if not data:
            raise ValueError("the xgboost artefact is empty")
        if data[:1] == b"\x80":
            raise ValueError(_PICKLE_MESSAGE)
        with xgb.config_context(nthread=1):  # no OpenMP pool before the fork: see the module doc
            booster = xgb.Booster(params={"nthread": 1})
            try:
                booster.load_model(bytearray(data))
            except xgb.core.XGBoostError as exc:
                detail = _XGBOOST_ERROR_PREFIX.sub("", str(exc).splitlines()[0])
                raise ValueError(
                    f"the artefact is not an XGBoost model in JSON or UBJSON format ({detail}); "
                    "save it with booster.save_model('model.json') or 'model.ubj'"
                ) from None
            learner = json.loads(booster.save_config())["learner"]
            types: list[str | None] = list(booster.feature_types or [])
            types = types or [None] * booster.num_features()
            categories = _stored_categories(booster) if "c" in types else {}
        objective = str(learner["objective"]["name"])
        params = learner["learner_model_param"]
        width = _output_width(
            objective, self.output.kind, int(params["num_class"]), int(params.get("num_target", 1))
        )
        if width is not None:
            self._labels = index_labels(width, self.output, "booster")
        self._binary = objective == "binary:logistic"
        names = booster.feature_names or [f"f{i}" for i in range(booster.num_features())]
        self._features = [
            _feature(str(name), kind, categories.get(index))
            for index, (name, kind) in enumerate(zip(names, types, strict=True))
        ]
        self._booster: Any = booster

    def start(self) -> None:
        """Let predictions use `nthread` threads, now that this is the serving process."""
        self._booster.set_param({"nthread": self._threads})

    def _raw_predict(self, matrix: np.ndarray[Any, Any]) -> Any:
        return self._booster.inplace_predict(matrix)

    def _decide(self, probabilities: np.ndarray[Any, Any]) -> list[int]:
        """`XGBClassifier.predict`'s rule: class 1 when p > 0.5 (binary), else the first most
        probable class."""
        if self._binary:
            chosen: list[int] = (probabilities[:, 1] > 0.5).astype(np.int64).tolist()
            return chosen
        return super()._decide(probabilities)


def _output_width(objective: str, kind: str, num_class: int, num_target: int) -> int | None:
    """The number of class probabilities per row (None for a regressor), or why not servable."""
    if kind == "classifier":
        if objective == "binary:logistic":
            return 2
        if objective == "multi:softprob":
            return num_class
        hint = _CLASSIFIER_HINTS.get(objective, "its predictions are not class probabilities")
        raise TypeError(
            f"output kind is classifier but the booster's objective is {objective}: {hint} "
            "(objectives served as classifiers: binary:logistic, multi:softprob)"
        )
    if kind == "regressor":
        if not objective.startswith(_REGRESSOR_PREFIXES):
            raise TypeError(
                f"output kind is regressor but the booster's objective is {objective}, a "
                "classification objective; use output kind classifier"
                + (" (with objective multi:softprob)" if objective == "multi:softmax" else "")
            )
        if num_target > 1:
            raise TypeError(
                f"the booster predicts {num_target} values per row (multi-target or several "
                "quantiles); output kind regressor answers one value per row"
            )
        return None
    raise TypeError(f"the xgboost runtime answers output kind classifier or regressor, not {kind}")


def _feature(name: str, kind: str | None, categories: list[Category] | None) -> Feature:
    """The field for one booster column, from XGBoost's feature type (and stored categories).

    Every field is nullable: XGBoost sends a missing value down each split's learned default
    branch, so null is an input the model was built to take, not a gap to refuse.
    """
    if kind != "c":
        field_type: FieldType = _NUMERIC_TYPES.get(kind or "", "number")
        return Feature(InputField(name=name, type=field_type, nullable=True), None)
    if categories is None:
        # Trained from category codes (NumPy with feature_types, or XGBoost < 3.1, or names
        # the file cannot hold faithfully): the booster knows no names, so clients send the
        # integer code the model was trained with, exactly as XGBoost itself would read it.
        field = InputField(
            name=name,
            type="integer",
            nullable=True,
            minimum=0,
            description="category code (the model file stores no category names)",
        )
        return Feature(field, None)
    return categorical_feature(name, categories)


def _stored_categories(booster: Any) -> dict[int, list[Category]]:
    """Feature index → its category names, in code order, as XGBoost >= 3.1 stores them.

    A booster trained from pandas `category` columns keeps each column's categories in the model
    (`gradient_booster.model.cats`) to re-code new data: strings as UTF-8 bytes split by offsets,
    numbers as values; a category's code is its position. Anything unexpected yields no names.
    """
    try:
        model = json.loads(bytes(booster.save_raw("json")))
        booster_json = model["learner"]["gradient_booster"]
        trees = booster_json.get("model") or booster_json.get("gbtree", {}).get("model", {})
        encodings = trees.get("cats", {}).get("enc", [])
    except (KeyError, TypeError, ValueError, AttributeError):
        return {}
    found: dict[int, list[Category]] = {}
    for index, encoding in enumerate(encodings):
        names = _decode_categories(encoding) if isinstance(encoding, dict) else None
        if names:
            found[index] = names
    return found


def _decode_categories(encoding: dict[str, Any]) -> list[Category] | None:
    values = encoding.get("values") or []
    if "offsets" not in encoding:
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            return [int(v) if float(v).is_integer() else float(v) for v in values]
        return None
    offsets = encoding["offsets"]
    data = bytes(int(v) & 0xFF for v in values)
    if not data.isascii() or not offsets or offsets[-1] != len(data):
        # XGBoost 3.2 writes string offsets in characters but values in bytes, so non-ASCII
        # category names come back truncated: unrecoverable, the field takes codes instead.
        return None
    return [data[a:b].decode("ascii") for a, b in pairwise(offsets)]
