"""Plain Python models: a class or function named by `package.module:Attribute`.

The model is code the operator installed (a pip package, or files listed in `code_paths`), so
importing it is trusted like any other installed code; only an artefact it reads needs a pin.
A model that is its own versioned package (the "embedded" layout) may leave `version` out of
model.yaml: it is taken from the installed distribution.
"""

from __future__ import annotations

import inspect
import pkgutil
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from fastinfer.model.spec import InputField, OutputSpec
from fastinfer.runtimes.base import Prediction, Row, Runtime
from fastinfer.runtimes.frames import Column, NullableDtypes, build_frame, column_builders
from fastinfer.runtimes.outputs import ClassIndex, class_labels, classifier_predictions

_ENTRYPOINT = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_INPUT_FORMATS = ("records", "dataframe")
_SCALARS = (str, int, float, bool, type(None))


class PythonRuntime(Runtime):
    """Serves a Python callable: a class instantiated once, or a plain `predict` function."""

    name = "python"
    option_keys = ("entrypoint", "init_kwargs", "input_format")

    def __init__(
        self,
        output: OutputSpec,
        options: Mapping[str, Any] | None = None,
        *,
        directory: Path | None = None,
    ) -> None:
        super().__init__(output, options, directory=directory)
        self.entrypoint = _check_entrypoint(self.options.get("entrypoint"))
        init_kwargs = self.options.get("init_kwargs", {})
        if not isinstance(init_kwargs, dict) or not all(isinstance(k, str) for k in init_kwargs):
            raise ValueError(
                f"runtime option init_kwargs must be a mapping of argument names to values "
                f"(got {init_kwargs!r})"
            )
        if "model_dir" in init_kwargs:
            raise ValueError(
                "runtime option init_kwargs must not set model_dir: fastinfer passes the model "
                "directory itself"
            )
        self.init_kwargs: dict[str, Any] = init_kwargs
        input_format = self.options.get("input_format", "records")
        if input_format not in _INPUT_FORMATS:
            raise ValueError(
                f"runtime option input_format must be one of {', '.join(_INPUT_FORMATS)} "
                f"(got {input_format!r})"
            )
        self.input_format: str = input_format
        self.model: Any = None
        self._predict: Callable[[Any], Any] | None = None
        self._predict_proba: Callable[[Any], Any] | None = None
        self._labels: list[str] | None = None
        self._classes: ClassIndex | None = None
        self._columns: dict[str, Column] = {}
        self._tensor_columns: list[str] = []

    def needs_trust(self, data: bytes) -> bool:
        """Only an artefact needs a pin: the code itself is trusted by being installed."""
        return bool(data)

    def load(self, data: bytes) -> None:
        """Import the entrypoint, build the model, and hand it the artefact if there is one."""
        target = _resolve(self.entrypoint)
        if inspect.isclass(target):
            self.model = self._instantiate(target)
        else:
            if self.init_kwargs:
                raise TypeError(
                    f"entrypoint {self.entrypoint!r} is not a class, so runtime option "
                    "init_kwargs has nothing to construct"
                )
            self.model = target
        if callable(getattr(self.model, "predict", None)):
            self._predict = self.model.predict
        elif callable(self.model):
            self._predict = self.model
        else:
            raise TypeError(
                f"entrypoint {self.entrypoint!r} is a {type(self.model).__name__}: expected a "
                "class whose instances have predict(batch), or a function predict(batch)"
            )
        if data:
            loader = getattr(self.model, "load", None)
            if not callable(loader):
                raise TypeError(
                    f"the config names an artefact but {self.entrypoint!r} has no "
                    "load(data: bytes) method to receive it"
                )
            loader(data)
        self._plan_classifier()

    def _instantiate(self, cls: type) -> Any:
        kwargs = dict(self.init_kwargs)
        try:
            parameters = set(inspect.signature(cls).parameters)
        except (TypeError, ValueError):  # a builtin or extension type: no signature to read
            parameters = set()
        if "model_dir" in parameters:
            kwargs["model_dir"] = self.directory
        try:
            return cls(**kwargs)
        except Exception as exc:
            raise RuntimeError(
                f"entrypoint {self.entrypoint!r}: {cls.__name__}(**{sorted(kwargs)}) failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def _plan_classifier(self) -> None:
        """Use predict_proba (the probabilities) beside predict (the label, one of the classes)
        when the model also names its classes, as scikit-learn does."""
        if self.output.kind != "classifier":
            return
        predict_proba = getattr(self.model, "predict_proba", None)
        classes = getattr(self.model, "classes_", None)
        if classes is None:
            classes = getattr(self.model, "classes", None)
        if callable(predict_proba) and classes is not None and not callable(classes):
            self._predict_proba = predict_proba
            self._labels = class_labels(list(classes), self.output)
            self._classes = ClassIndex(list(classes), f"entrypoint {self.entrypoint!r}: predict")

    def bind_schema(self, fields: list[InputField]) -> None:
        self._columns = column_builders(fields, NullableDtypes.NULLABLE)
        self._tensor_columns = [f.name for f in fields if f.shape is not None]

    def predict(self, rows: list[Row], columns: list[str]) -> list[Prediction]:
        if self._predict is None:
            raise RuntimeError("the python runtime was not loaded: call load() first")
        batch = self._batch(rows, columns)
        proba, labels, classes = self._predict_proba, self._labels, self._classes
        if proba is not None and labels is not None and classes is not None:
            probabilities = np.asarray(proba(batch), dtype=float)
            if probabilities.ndim != 2 or probabilities.shape[1] != len(labels):
                raise ValueError(
                    f"entrypoint {self.entrypoint!r}: predict_proba gave shape "
                    f"{list(probabilities.shape)}; expected [{len(rows)}, {len(labels)}] "
                    "(one probability per class)"
                )
            self._check_length(len(probabilities), len(rows))
            chosen = classes.columns(self._as_list(self._predict(batch)), len(rows))
            return classifier_predictions(probabilities, labels, chosen)
        results = self._as_list(self._predict(batch))
        self._check_length(len(results), len(rows))
        if self.output.kind == "classifier":
            return [self._label(value) for value in results]
        if self.output.kind == "regressor":
            return [self._value(value) for value in results]
        return [self._tensor(value) for value in results]

    def _batch(self, rows: list[Row], columns: list[str]) -> Any:
        """The rows in the model's chosen input format, holding plain Python values only."""
        if self._tensor_columns:  # the numeric fast path hands tensor fields over as arrays
            tensors = self._tensor_columns
            rows = [
                {**row, **{name: _plain_input(row[name]) for name in tensors if name in row}}
                for row in rows
            ]
        if self.input_format == "records":
            return rows
        return build_frame(rows, columns, self._columns)

    def _as_list(self, result: Any) -> list[Any]:
        """The batch result as a list with one entry per row."""
        if isinstance(result, pd.DataFrame):
            return list(result.to_dict("records"))
        if isinstance(result, pd.Series):
            return list(result.tolist())
        if isinstance(result, np.ndarray):
            if result.ndim == 0:
                raise TypeError(self._not_a_sequence(result))
            if self.output.kind == "regressor" and result.ndim == 2 and result.shape[1] == 1:
                result = result[:, 0]
            return list(result.tolist())
        if isinstance(result, str | bytes | Mapping) or not isinstance(result, Iterable):
            raise TypeError(self._not_a_sequence(result))
        return list(result)

    def _not_a_sequence(self, result: Any) -> str:
        return (
            f"entrypoint {self.entrypoint!r} returned a {type(result).__name__}; expected a "
            "list (or array) with one prediction per row"
        )

    def _check_length(self, got: int, expected: int) -> None:
        if got != expected:
            raise ValueError(
                f"entrypoint {self.entrypoint!r} returned {got} predictions for {expected} rows"
            )

    def _label(self, value: Any) -> Prediction:
        mapping = self.output.labels or {}
        if isinstance(value, Mapping):
            if "label" not in value:
                raise TypeError(
                    f"entrypoint {self.entrypoint!r} returned a dict without 'label' "
                    f"(keys: {', '.join(map(str, value))}) for a classifier"
                )
            prediction = {str(k): self._json(v) for k, v in value.items()}
            label = str(prediction["label"])
            prediction["label"] = mapping.get(label, label)
            probabilities = prediction.get("probabilities")
            if isinstance(probabilities, dict):
                prediction["probabilities"] = {
                    mapping.get(k, k): _number(p, self.entrypoint) for k, p in probabilities.items()
                }
            return prediction
        plain = self._json(value)
        if isinstance(plain, list | dict) or plain is None:
            raise TypeError(
                f"entrypoint {self.entrypoint!r} returned {plain!r} for a classifier row; "
                "expected a label or a dict with 'label'"
            )
        return {"label": mapping.get(str(plain), str(plain))}

    def _value(self, value: Any) -> Prediction:
        if isinstance(value, Mapping):
            if "value" not in value:
                raise TypeError(
                    f"entrypoint {self.entrypoint!r} returned a dict without 'value' "
                    f"(keys: {', '.join(map(str, value))}) for a regressor"
                )
            prediction = {str(k): self._json(v) for k, v in value.items()}
            prediction["value"] = _number(prediction["value"], self.entrypoint)
            return prediction
        return {"value": _number(self._json(value), self.entrypoint)}

    def _tensor(self, value: Any) -> Prediction:
        if isinstance(value, Mapping):
            return {str(k): self._json(v) for k, v in value.items()}
        return {"output": self._json(value)}

    def _json(self, value: Any) -> Any:
        return _jsonable(value, self.entrypoint)

    def derived_inputs(self) -> list[InputField] | None:
        """The model's own `inputs` attribute, in InputField form, if it has one."""
        declared = getattr(self.model, "inputs", None)
        if declared is None:
            return None
        if isinstance(declared, str | bytes | Mapping) or not isinstance(declared, Iterable):
            raise TypeError(
                f"entrypoint {self.entrypoint!r}: `inputs` must be a list of field dicts "
                f"(got a {type(declared).__name__})"
            )
        fields: list[InputField] = []
        for index, item in enumerate(declared):
            try:
                fields.append(
                    item if isinstance(item, InputField) else InputField.model_validate(item)
                )
            except ValidationError as exc:
                raise ValueError(
                    f"entrypoint {self.entrypoint!r}: inputs[{index}] is not a valid field: "
                    + "; ".join(
                        f"{'.'.join(map(str, e['loc'])) or '<field>'}: {e['msg']}"
                        for e in exc.errors()
                    )
                ) from None
        return fields

    def output_labels(self) -> list[str] | None:
        return self._labels


def _check_entrypoint(value: Any) -> str:
    if value is None:
        raise ValueError(
            "the python runtime needs runtime option entrypoint: 'package.module:Attribute'"
        )
    if not isinstance(value, str) or not _ENTRYPOINT.match(value):
        raise ValueError(
            f"runtime option entrypoint must look like 'package.module:Attribute' (got {value!r})"
        )
    return value


def _resolve(entrypoint: str) -> Any:
    """Import `module:attr.path`; every failure names the entrypoint and what was missing."""
    module_name, _, attribute = entrypoint.partition(":")
    try:
        return pkgutil.resolve_name(entrypoint)
    except AttributeError as exc:
        if module_name not in sys.modules:  # the module's own code failed while imported
            raise _import_failed(entrypoint, module_name, exc) from exc
        owner = getattr(exc.obj, "__name__", module_name)
        raise AttributeError(
            f"entrypoint {entrypoint!r}: {owner!r} has no attribute {exc.name or attribute!r}"
        ) from None
    except Exception as exc:
        raise _import_failed(entrypoint, module_name, exc) from exc


def _import_failed(entrypoint: str, module_name: str, exc: Exception) -> ImportError:
    """Why importing the entrypoint's module failed: it, or a module it imports, is missing?"""
    if isinstance(exc, ModuleNotFoundError):
        missing = exc.name or module_name
        if module_name == missing or module_name.startswith(missing + "."):
            return ImportError(
                f"entrypoint {entrypoint!r}: no module named {missing!r} (install the model's "
                "package, or list its files in code_paths)"
            )
        return ImportError(
            f"entrypoint {entrypoint!r}: importing {module_name!r} failed because it imports "
            f"{missing!r}, which is not installed"
        )
    return ImportError(
        f"entrypoint {entrypoint!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
    )


def _jsonable(value: Any, entrypoint: str) -> Any:
    """NumPy (or any `tolist()`-able) values → plain JSON values, recursively."""
    if isinstance(value, np.generic | np.ndarray):  # before scalars: np.float64 is a float
        return value.tolist()
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, Mapping):
        return {_key(k): _jsonable(v, entrypoint) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, entrypoint) for v in value]
    tolist = getattr(value, "tolist", None)
    if callable(tolist):  # a pandas Series, a torch tensor, ...
        return _jsonable(tolist(), entrypoint)
    raise TypeError(
        f"entrypoint {entrypoint!r} returned a {type(value).__name__} ({value!r:.80}), which "
        "cannot be sent as JSON; return numbers, strings, lists or dicts"
    )


def _key(key: Any) -> str:
    return str(key.item() if isinstance(key, np.generic) else key)


def _number(value: Any, entrypoint: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"entrypoint {entrypoint!r} returned {value!r:.80} where a number belongs")
    return float(value)


def _plain_input(value: Any) -> Any:
    return value.tolist() if isinstance(value, np.ndarray) else value
