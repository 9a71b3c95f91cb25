"""How an ONNX graph's inputs are fed from validated rows: one plan per graph input (a scalar
column, a per-row tensor field, or `input_columns` stacked into [N,F]), and the field each
derives for the schema (with the input dtype's integer range, so an overflow is a 422)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastinfer.model.spec import FieldType, InputField
from fastinfer.runtimes.base import Row

Dim = int | str | None

TENSOR_TYPES: dict[str, tuple[type[np.generic], FieldType]] = {
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
# The widest bound the validator takes: the largest float below 2**63 (±2**63 itself, and so
# uint64's full range, do not fit its int64 limits).
_INT64_BOUND = float(np.nextafter(2.0**63, 0.0))


@dataclass(frozen=True, slots=True)
class GraphInput:
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


def plan_inputs(args: Sequence[Any], stacked: Mapping[str, list[str]]) -> list[GraphInput]:
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


def _stack(arg: Any, columns: list[str]) -> GraphInput:
    """A [N,F] graph input fed from F scalar fields, one per column, in order (as a tabular
    model converted by skl2onnx takes its features: one float tensor)."""
    plan = _plan_input(arg)
    shape: list[Dim] = list(arg.shape)
    if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != len(columns)):
        raise ValueError(
            f"runtime option input_columns: graph input {plan.name!r} has shape {show(shape)}; "
            f"{len(columns)} columns stack into a [N,{len(columns)}] input"
        )
    field_type = TENSOR_TYPES[str(arg.type)][1]
    bounds = integer_bounds(plan.dtype)
    fields = tuple(InputField(name=c, type=field_type, **bounds) for c in columns)
    return GraphInput(plan.name, plan.dtype, None, None, None, fields)


def input_array(plan: GraphInput, rows: list[Row]) -> Any:
    if plan.columns:
        names = [f.name for f in plan.columns]
        return np.asarray([[row[n] for n in names] for row in rows], dtype=plan.dtype)
    return np.asarray([row[plan.name] for row in rows], dtype=plan.dtype)


def _plan_input(arg: Any) -> GraphInput:
    """Classify one graph input as a scalar column or a per-row tensor field."""
    name, shape, kind = str(arg.name), list(arg.shape), str(arg.type)
    if kind not in TENSOR_TYPES:
        raise TypeError(f"graph input {name!r} is a {kind}; only tensor inputs are supported")
    dtype, field_type = TENSOR_TYPES[kind]
    if not shape:
        raise TypeError(f"graph input {name!r} has no batch dimension (shape [])")
    rest: list[Dim] = shape[1:]
    if not rest or rest == [1]:
        field = InputField(name=name, type=field_type, **integer_bounds(dtype))
        return GraphInput(name, dtype, len(shape), field, None)
    if all(isinstance(d, int) and d > 0 for d in rest):
        dims = [int(d) for d in rest if d is not None]
        field = InputField(name=name, type=field_type, shape=dims)
        return GraphInput(name, dtype, None, field, None)
    problem = f"input {name!r} has shape {show(shape)}, whose non-batch dimensions are not fixed"
    return GraphInput(name, dtype, None, None, problem)


def integer_bounds(dtype: type[np.generic]) -> dict[str, float]:
    """The dtype's range for a scalar integer column: out of range is a 422, not an overflow."""
    if not issubclass(dtype, np.integer):
        return {}
    info = np.iinfo(dtype)
    return {
        "minimum": max(float(info.min), -_INT64_BOUND),
        "maximum": min(float(info.max), _INT64_BOUND),
    }


def show(shape: Sequence[Dim]) -> str:
    return "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"
