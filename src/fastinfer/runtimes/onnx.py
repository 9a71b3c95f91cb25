"""ONNX graphs run by onnxruntime on the CPU.

The graph's own signature is the schema: each graph input becomes one field, either a per-row
tensor (`x` float32 [N,256] → a list of 256 numbers) or, for [N] and [N,1] inputs as skl2onnx
writes them, a scalar column. The runtime option `input_columns` feeds a [N,F] input from F
named scalar fields instead (a tabular model converted with one float input). Sessions default
to one thread each way because fastinfer runs one server process per core; more threads per
process would only fight over the same cores.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from fastinfer.model.spec import FieldType, InputField, OutputSpec
from fastinfer.runtimes.base import Prediction, Row, Runtime
from fastinfer.runtimes.onnx_inputs import (
    TENSOR_TYPES,
    input_array,
    plan_inputs,
    show,
)
from fastinfer.runtimes.onnx_labels import choose_label_output, label_columns
from fastinfer.runtimes.onnx_options import OPTION_KEYS, input_columns, session_options
from fastinfer.runtimes.outputs import (
    class_labels,
    classifier_predictions,
    first_most_probable,
    index_labels,
)

_FLOAT_TENSORS = {"tensor(float)", "tensor(double)", "tensor(float16)"}
_JSON_TYPES: dict[FieldType, str] = {
    "number": "number",
    "integer": "integer",
    "boolean": "boolean",
    "string": "string",
    "any": "string",
}
_ZIPMAP = re.compile(r"^seq\(map\((?:string|int64),tensor\((?:float|double)\)\)\)$")


class OnnxRuntime(Runtime):
    name = "onnx"

    option_keys = OPTION_KEYS

    def __init__(
        self,
        output: OutputSpec,
        options: Mapping[str, Any] | None = None,
        *,
        directory: Path | None = None,
    ) -> None:
        super().__init__(output, options, directory=directory)
        self._session_options = session_options(self.options)
        probabilities_output = self.options.get("probabilities_output")
        if probabilities_output is not None and not isinstance(probabilities_output, str):
            raise ValueError("runtime option probabilities_output must be an output name")
        self._probabilities_output: str | None = probabilities_output
        label_output = self.options.get("label_output")
        if label_output is not None and not isinstance(label_output, str):
            raise ValueError("runtime option label_output must be an output name")
        self._label_output: str | None = label_output
        self._has_label = False
        self._input_columns = input_columns(self.options)
        self._labels: list[str] | None = None
        self._data = b""
        self._session: ort.InferenceSession | None = None

    def needs_trust(self, data: bytes) -> bool:
        return False  # a graph of operators: loading it runs no Python

    def load(self, data: bytes) -> None:
        """Keep the (sha256-verified) graph; the session and its threads wait for `start`."""
        if not data:
            raise ValueError("the ONNX artefact is empty")
        self._data = data

    def start(self) -> None:
        """Create the session in the serving process: onnxruntime's thread pools do not fork."""
        if self._session is not None:
            return
        session = ort.InferenceSession(
            self._data, sess_options=self._session_options, providers=["CPUExecutionProvider"]
        )
        self._inputs = plan_inputs(session.get_inputs(), self._input_columns)
        self._input_names = [f.name for i in self._inputs for f in i.fields]
        self._row_by_row = _fixed_batch_of_one(session.get_inputs())
        outputs = session.get_outputs()
        self._output_names = [o.name for o in outputs]
        self._outputs = {o.name: o for o in outputs}
        self._fetch: list[str] = self._output_names
        self._zipmap = False
        if self.output.kind == "classifier":
            chosen = self._choose_probabilities(outputs)
            label = choose_label_output(outputs, chosen, self._label_output)
            self._fetch = [chosen.name] if label is None else [chosen.name, label.name]
            self._has_label = label is not None
            self._zipmap = bool(_ZIPMAP.match(chosen.type))
            width = None if self._zipmap else chosen.shape[1]
            if isinstance(width, int):
                self._labels = index_labels(width, self.output, "model")
        elif self.output.kind == "regressor":
            first = outputs[0]
            if first.type not in TENSOR_TYPES or first.type == "tensor(string)":
                raise TypeError(f"regressor output {first.name!r} is a {first.type}, not numbers")
            shape = list(first.shape)
            one_column = len(shape) == 2 and (shape[1] == 1 or not isinstance(shape[1], int))
            if len(shape) != 1 and not one_column:
                raise TypeError(
                    f"regressor output {first.name!r} has shape {show(shape)}; "
                    "expected [N] or [N,1]"
                )
            self._fetch = [first.name]
        else:
            for out in outputs:
                if out.type.startswith("tensor(") and len(out.shape) == 0:
                    raise TypeError(
                        f"output {out.name!r} has no batch dimension, so it cannot be split "
                        "into one value per row"
                    )
        self._session = session

    @property
    def session(self) -> ort.InferenceSession:
        """The started session; `start` must have run (the registry calls it after `load`)."""
        if self._session is None:
            raise RuntimeError("the onnx runtime was not started: call start() after load()")
        return self._session

    def _choose_probabilities(self, outputs: Sequence[Any]) -> Any:
        """The [N,K] float output (or a skl2onnx ZipMap) that holds class probabilities."""
        if self._probabilities_output is not None:
            for out in outputs:
                if out.name == self._probabilities_output:
                    if _is_probability_matrix(out) or _ZIPMAP.match(out.type):
                        return out
                    raise TypeError(
                        f"output {out.name!r} is a {out.type} of shape {show(out.shape)}; "
                        "probabilities must be a float [N,K] tensor"
                    )
            raise ValueError(
                f"probabilities_output {self._probabilities_output!r} is not an output of the "
                f"graph (outputs: {', '.join(o.name for o in outputs)})"
            )
        for out in outputs:
            if _is_probability_matrix(out):
                return out
        for out in outputs:
            if _ZIPMAP.match(out.type):
                return out
        described = ", ".join(f"{o.name} {o.type} {show(o.shape)}" for o in outputs)
        raise TypeError(
            f"output kind is classifier but no output is a float [N,K] tensor ({described})"
        )

    def predict(self, rows: list[Row], columns: list[str]) -> list[Prediction]:
        if not rows:
            return []
        missing = [name for name in self._input_names if name not in columns]
        if missing:
            raise ValueError(
                f"graph input(s) {', '.join(missing)} have no field in the row schema "
                f"(fields: {', '.join(columns)})"
            )
        if self._row_by_row and len(rows) > 1:
            parts = [self._run(rows[i : i + 1]) for i in range(len(rows))]
            results = [_concatenate([p[k] for p in parts]) for k in range(len(self._fetch))]
        else:
            results = self._run(rows)
        for name, result in zip(self._fetch, results, strict=True):
            if len(result) != len(rows):
                raise ValueError(
                    f"output {name!r} has {len(result)} rows for a batch of {len(rows)}"
                )
        if self.output.kind == "classifier":
            return self._classify(results)
        if self.output.kind == "regressor":
            values = np.asarray(results[0], dtype=float).reshape(len(rows), -1)
            if values.shape[1] != 1:
                raise ValueError(f"regressor output has {values.shape[1]} values per row, not 1")
            return [{"value": v} for v in values[:, 0].tolist()]
        return [
            {name: _row_value(result, i) for name, result in zip(self._fetch, results, strict=True)}
            for i in range(len(rows))
        ]

    def _run(self, rows: list[Row]) -> list[Any]:
        feed: dict[str, Any] = {}
        for spec in self._inputs:
            array = input_array(spec, rows)
            if spec.scalar_rank == 2:
                array = array.reshape(-1, 1)
            feed[spec.name] = array
        return list(self.session.run(self._fetch, feed))

    def _classify(self, results: list[Any]) -> list[Prediction]:
        """The probabilities as the graph gave them; the label from its label output, else (a
        graph with none) the first most probable class, the rule of ONNX's own ArgMax."""
        result = results[0]
        keys: list[Any] | None = None
        if self._zipmap:
            keys = list(result[0])
            probabilities = np.array([[m[k] for k in keys] for m in result], dtype=float)
            labels = class_labels(keys, self.output)
        else:
            probabilities = np.asarray(result, dtype=float)
            labels = self._labels or index_labels(probabilities.shape[1], self.output, "model")
        if len(labels) != probabilities.shape[1]:
            raise ValueError(
                f"the model gave {probabilities.shape[1]} probabilities for {len(labels)} labels"
            )
        if self._labels is None:
            self._labels = labels  # known only once the graph has run (ZipMap, dynamic K)
        if self._has_label:
            chosen = label_columns(results[1], self._fetch[1], labels, keys, self.output)
        else:
            chosen = first_most_probable(probabilities)
        return classifier_predictions(probabilities, labels, chosen)

    def derived_inputs(self) -> list[InputField] | None:
        if self._session is None:
            raise RuntimeError("the onnx runtime was not started: call start() after load()")
        problems = [i.problem for i in self._inputs if i.problem is not None]
        if problems:
            raise TypeError(
                "cannot derive the input schema from the graph: "
                + "; ".join(problems)
                + " (declare `inputs` in model.yaml, or export with fixed dimensions)"
            )
        return [f for i in self._inputs for f in i.fields]

    def input_dtypes(self, fields: list[InputField]) -> dict[str, np.dtype[Any]]:
        """Each field fed to a graph input (by its name, or as one of its `input_columns`), at
        that input's element type (float32 for most graphs): the schema keeps values within
        what the graph can hold."""
        if self._session is None:
            raise RuntimeError("the onnx runtime was not started: call start() after load()")
        names = {f.name for f in fields}
        fed = {f.name: i.dtype for i in self._inputs for f in i.columns}  # input_columns
        fed.update({i.name: i.dtype for i in self._inputs if not i.columns})
        return {name: np.dtype(dtype) for name, dtype in fed.items() if name in names}

    def output_labels(self) -> list[str] | None:
        return self._labels

    def output_schemas(self) -> dict[str, dict[str, Any]]:
        """JSON schema of each output's per-row value, for `kind: tensor` in OpenAPI."""
        return {name: _output_schema(self._outputs[name]) for name in self._fetch}


def _fixed_batch_of_one(inputs: Sequence[Any]) -> bool:
    """True when the graph takes exactly one row per run (exported without a dynamic batch)."""
    fixed = {d for d in (arg.shape[0] for arg in inputs if arg.shape) if isinstance(d, int)}
    if fixed - {1}:
        raise TypeError(
            f"the graph has a fixed batch size of {', '.join(map(str, sorted(fixed)))}; export it "
            "with a dynamic first dimension (or a batch of 1)"
        )
    return bool(fixed)


def _is_probability_matrix(out: Any) -> bool:
    return out.type in _FLOAT_TENSORS and len(out.shape) == 2


def _concatenate(parts: list[Any]) -> Any:
    if all(isinstance(p, np.ndarray) for p in parts):
        return np.concatenate(parts, axis=0)
    return [item for part in parts for item in part]


def _row_value(result: Any, index: int) -> Any:
    """One row of an output as JSON-ready data (maps get string keys)."""
    value = result[index]
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k.item() if isinstance(k, np.generic) else k): v for k, v in value.items()}
    return value


def _output_schema(out: Any) -> dict[str, Any]:
    if _ZIPMAP.match(out.type):
        return {"type": "object", "additionalProperties": {"type": "number"}}
    if out.type not in TENSOR_TYPES:
        return {}
    schema: dict[str, Any] = {"type": _JSON_TYPES[TENSOR_TYPES[out.type][1]]}
    for dim in reversed(list(out.shape)[1:]):
        schema = {"type": "array", "items": schema}
        if isinstance(dim, int):
            schema["minItems"] = schema["maxItems"] = dim
    return schema
