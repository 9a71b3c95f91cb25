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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from fastinfer.model.spec import FieldType, InputField, OutputSpec
from fastinfer.runtimes.base import Prediction, Row, Runtime
from fastinfer.runtimes.onnx_labels import choose_label_output, label_columns
from fastinfer.runtimes.onnx_options import OPTION_KEYS, input_columns, session_options
from fastinfer.runtimes.outputs import (
    class_labels,
    classifier_predictions,
    first_most_probable,
    index_labels,
)

Dim = int | str | None

_TENSOR_TYPES: dict[str, tuple[type[np.generic], FieldType]] = {
    "tensor(float)": (np.float32, "number"),
    "tensor(double)": (np.float64, "number"),
    "tensor(float16)": (np.float16, "number"),
    "tensor(int8)": (np.int8, "integer"),
    "tensor(int16)": (np.int16, "integer"),
    "tensor(int32)": (np.int32, "integer"),
    "tensor(int64)": (np.int64, "integer"),
    "tensor(uint8)": (np.uint8, "integer"),
    "tensor(uint16)": (np.uint16, "integer"),
    "tensor(uint32)": (np.uint32, "integer"),
    "tensor(uint64)": (np.uint64, "integer"),
    "tensor(bool)": (np.bool_, "boolean"),
    "tensor(string)": (np.object_, "string"),
}
_FLOAT_TENSORS = {"tensor(float)", "tensor(double)", "tensor(float16)"}
_JSON_TYPES: dict[FieldType, str] = {
    "number": "number",
    "integer": "integer",
    "boolean": "boolean",
    "string": "string",
    "any": "string",
}
_ZIPMAP = re.compile(r"^seq\(map\((?:string|int64),tensor\((?:float|double)\)\)\)$")
# The widest bound the validator takes: the largest float below 2**63 (±2**63 itself, and so
# uint64's full range, do not fit its int64 limits).
_INT64_BOUND = float(np.nextafter(2.0**63, 0.0))


@dataclass(frozen=True, slots=True)
class _GraphInput:
    """How one graph input is fed from rows, and the field it derives (or why it cannot)."""

    name: str
    dtype: type[np.generic]
    scalar_rank: int | None  # 1 or 2 for a scalar column ([N] / [N,1]); None for a tensor
    field: InputField | None
    problem: str | None
    columns: tuple[InputField, ...] = ()  # runtime option input_columns: stacked into [N,F]

    @property
    def fields(self) -> list[InputField]:
        """The fields that feed this input: its own, or the columns stacked into it."""
        return list(self.columns) if self.columns else [self.field] if self.field else []


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
        self._inputs = _plan_inputs(session.get_inputs(), self._input_columns)
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
            if first.type not in _TENSOR_TYPES or first.type == "tensor(string)":
                raise TypeError(f"regressor output {first.name!r} is a {first.type}, not numbers")
            shape = list(first.shape)
            one_column = len(shape) == 2 and (shape[1] == 1 or not isinstance(shape[1], int))
            if len(shape) != 1 and not one_column:
                raise TypeError(
                    f"regressor output {first.name!r} has shape {_show(shape)}; "
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
                        f"output {out.name!r} is a {out.type} of shape {_show(out.shape)}; "
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
        described = ", ".join(f"{o.name} {o.type} {_show(o.shape)}" for o in outputs)
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
            array = _input_array(spec, rows)
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


def _plan_inputs(args: Sequence[Any], stacked: Mapping[str, list[str]]) -> list[_GraphInput]:
    """Each graph input's plan; those named in input_columns are fed from several fields."""
    unknown = sorted(set(stacked) - {str(arg.name) for arg in args})
    if unknown:
        raise ValueError(
            f"runtime option input_columns names {', '.join(unknown)}, not graph input(s) "
            f"(inputs: {', '.join(str(arg.name) for arg in args)})"
        )
    plans = [
        _stack(arg, stacked[arg.name]) if arg.name in stacked else _plan_input(arg) for arg in args
    ]
    names = [f.name for plan in plans for f in plan.fields]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(
            f"runtime option input_columns: field(s) {', '.join(repeated)} feed the graph twice"
        )
    return plans


def _stack(arg: Any, columns: list[str]) -> _GraphInput:
    """A [N,F] graph input fed from F scalar fields, one per column, in order (as a tabular
    model converted by skl2onnx takes its features: one float tensor)."""
    plan = _plan_input(arg)
    shape: list[Dim] = list(arg.shape)
    if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != len(columns)):
        raise ValueError(
            f"runtime option input_columns: graph input {plan.name!r} has shape {_show(shape)}; "
            f"{len(columns)} columns stack into a [N,{len(columns)}] input"
        )
    field_type = _TENSOR_TYPES[str(arg.type)][1]
    bounds = _integer_bounds(plan.dtype)
    fields = tuple(InputField(name=c, type=field_type, **bounds) for c in columns)
    return _GraphInput(plan.name, plan.dtype, None, None, None, fields)


def _input_array(plan: _GraphInput, rows: list[Row]) -> Any:
    if plan.columns:
        names = [f.name for f in plan.columns]
        return np.asarray([[row[n] for n in names] for row in rows], dtype=plan.dtype)
    return np.asarray([row[plan.name] for row in rows], dtype=plan.dtype)


def _plan_input(arg: Any) -> _GraphInput:
    """Classify one graph input as a scalar column or a per-row tensor field."""
    name, shape, kind = str(arg.name), list(arg.shape), str(arg.type)
    if kind not in _TENSOR_TYPES:
        raise TypeError(f"graph input {name!r} is a {kind}; only tensor inputs are supported")
    dtype, field_type = _TENSOR_TYPES[kind]
    if not shape:
        raise TypeError(f"graph input {name!r} has no batch dimension (shape [])")
    rest: list[Dim] = shape[1:]
    if not rest or rest == [1]:
        field = InputField(name=name, type=field_type, **_integer_bounds(dtype))
        return _GraphInput(name, dtype, len(shape), field, None)
    if all(isinstance(d, int) and d > 0 for d in rest):
        dims = [int(d) for d in rest if d is not None]
        field = InputField(name=name, type=field_type, shape=dims)
        return _GraphInput(name, dtype, None, field, None)
    problem = f"input {name!r} has shape {_show(shape)}, whose non-batch dimensions are not fixed"
    return _GraphInput(name, dtype, None, None, problem)


def _integer_bounds(dtype: type[np.generic]) -> dict[str, float]:
    """The dtype's range for a scalar integer column: out of range is a 422, not an overflow."""
    if not issubclass(dtype, np.integer):
        return {}
    info = np.iinfo(dtype)
    return {
        "minimum": max(float(info.min), -_INT64_BOUND),
        "maximum": min(float(info.max), _INT64_BOUND),
    }


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
    if out.type not in _TENSOR_TYPES:
        return {}
    schema: dict[str, Any] = {"type": _JSON_TYPES[_TENSOR_TYPES[out.type][1]]}
    for dim in reversed(list(out.shape)[1:]):
        schema = {"type": "array", "items": schema}
        if isinstance(dim, int):
            schema["minItems"] = schema["maxItems"] = dim
    return schema


def _show(shape: Sequence[Dim]) -> str:
    return "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"
