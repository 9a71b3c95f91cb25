"""Open Inference Protocol v2 request tensors → rows: the part of decoding a request that every
transport shares (the REST body's JSON and binary data, the gRPC message's tensors).

`inputs_to_rows` takes the request's `inputs` in the REST document's form (a list of objects
with name, datatype, shape, and `data` or `parameters.binary_data_size`) and the binary data the
sizes index into, in input order. Only the tensors' form is checked here (names, datatypes,
shapes, sizes); the values are left to the row schema. In a nullable scalar float column, NaN
means missing (None), since tensors cannot hold nulls.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from itertools import repeat
from typing import Any

from fastinfer.model.spec import InputField
from fastinfer.protocols.v2_metadata import batched_input
from fastinfer.protocols.v2_tensors import (
    ACCEPTED_DATATYPES,
    DATATYPES,
    V2Error,
    V2TooManyRows,
    binary_column,
    datatype_names,
    expected_binary_size,
    json_column,
)
from fastinfer.protocols.v2_values import Datatype

HEADER_LENGTH_HEADER = "Inference-Header-Content-Length"
MAX_PARAMETER_DEPTH = 8  # parameters are scalars in the protocol; the tensors' depth is their shape
_UNSUPPORTED_PARAMETERS = {
    "shared_memory_region": "shared memory",
    "shared_memory_byte_size": "shared memory",
    "shared_memory_offset": "shared memory",
    "classification": "the classification extension",
}


@dataclass(slots=True)
class _Input:
    """One request input, checked for form but not yet decoded."""

    name: str
    datatype: Datatype
    dims: tuple[int, ...]
    data: Any = None
    binary_size: int | None = None
    binary_offset: int = 0
    spec: InputField | None = None


def inputs_to_rows(
    raw_inputs: Any,
    fields: list[InputField],
    binary: memoryview,
    *,
    has_binary: bool,
    max_rows: int,
) -> list[dict[str, Any]]:
    """The request's input tensors → rows keyed by field name (one dict per row, every field
    present). `has_binary`: the request says where binary data is (REST: the header-length
    header; gRPC: always), so inputs may carry `binary_data_size`."""
    matrix = _batched(raw_inputs, fields)
    if matrix is not None:
        _row_count([matrix], max_rows)
        _place_binary([matrix], binary, has_header=has_binary)
        return _matrix_rows(matrix, fields, binary)
    inputs = _inputs(raw_inputs, fields)
    rows_count = _row_count(inputs, max_rows)
    _place_binary(inputs, binary, has_header=has_binary)

    columns: dict[str, list[Any]] = {}
    for item in inputs:
        assert item.spec is not None
        row_dims = tuple(item.spec.shape or ())
        if item.binary_size is not None:
            view = binary[item.binary_offset : item.binary_offset + item.binary_size]
            columns[item.name] = binary_column(item.name, item.datatype, item.dims, row_dims, view)
        else:
            columns[item.name] = json_column(
                item.name, item.datatype, item.dims, row_dims, item.data
            )
        is_float = item.datatype.name.startswith(("FP", "BF"))
        if item.spec.nullable and item.spec.shape is None and is_float:
            # Tensors have no null: NaN is how a float column says "missing" (as in pandas).
            columns[item.name] = [None if v != v else v for v in columns[item.name]]  # noqa: PLR0124
    names = tuple(f.name for f in fields)
    ordered = [columns[name] if name in columns else repeat(None, rows_count) for name in names]
    # map/zip keep the per-row work in C: this is most of the decoding time for tabular requests
    return list(map(dict, map(zip, repeat(names), zip(*ordered, strict=False))))


def check_parameters(value: Any, owner: str) -> dict[str, Any]:
    """A request's, input's or output's `parameters`: an object of (nearly) scalars, none
    asking for a feature fastinfer does not have."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise V2Error(f"'parameters' of {owner} must be an object, not {json_type(value)}")
    if not _shallow(value, MAX_PARAMETER_DEPTH):
        raise V2Error(
            f"'parameters' of {owner} nest deeper than {MAX_PARAMETER_DEPTH} levels; "
            "parameters hold scalars (or small objects)"
        )
    for key, feature in _UNSUPPORTED_PARAMETERS.items():
        if key in value:
            raise V2Error(f"{owner}: parameter {key!r} asks for {feature}, which is not supported")
    return value


def _shallow(value: Any, limit: int) -> bool:
    """Whether `value` nests at most `limit` containers deep (parameters are kept as given)."""
    if type(value) is dict:
        return limit > 0 and all(_shallow(v, limit - 1) for v in value.values())
    if type(value) is list:
        return limit > 0 and all(_shallow(v, limit - 1) for v in value)
    return True


def _inputs(value: Any, fields: list[InputField]) -> list[_Input]:
    """Check each input's form and match it to its field; nothing is decoded yet."""
    if value is None:
        raise V2Error("the request has no 'inputs' (a list of input tensors)")
    if not isinstance(value, list):
        raise V2Error(f"'inputs' must be a list of input tensors, not {json_type(value)}")
    if not value:
        raise V2Error("'inputs' is empty; the request needs at least one input tensor")
    by_name = {f.name: f for f in fields}
    inputs: list[_Input] = []
    seen: set[str] = set()
    for index, item in enumerate(value):
        parsed = _input(index, item)
        if parsed.name in seen:
            raise V2Error(f"input {parsed.name!r} appears twice")
        seen.add(parsed.name)
        spec = by_name.get(parsed.name)
        if spec is None:
            raise V2Error(
                f"input {parsed.name!r} is not an input of this model (inputs: {_names(by_name)})"
            )
        accepted = ACCEPTED_DATATYPES[spec.type]
        if parsed.datatype.name not in accepted:
            raise V2Error(
                f"input {parsed.name!r}: datatype {parsed.datatype.name} cannot hold the field's "
                f"type {spec.type} (use {_datatype_hint(accepted)})"
            )
        _check_shape(parsed, spec)
        parsed.spec = spec
        inputs.append(parsed)
    missing = [f.name for f in fields if f.name not in seen and not f.nullable]
    if missing:
        raise V2Error(f"required input(s) missing: {', '.join(map(repr, missing))}")
    return inputs


def _batched(value: Any, fields: list[InputField]) -> _Input | None:
    """The request's one [N, F] tensor for every input at once; None when it sends per-input
    tensors (or is not for a model that takes one: then `_inputs` says what is wrong)."""
    if type(value) is not list or len(value) != 1 or type(value[0]) is not dict:
        return None
    name = value[0].get("name")
    if not isinstance(name, str) or any(f.name == name for f in fields):
        return None  # a field's own tensor (the per-column form)
    if batched_input(fields) is None:
        return None
    item = _input(0, value[0])
    if item.datatype.kind not in ("int", "float"):
        raise V2Error(
            f"input {name!r}: one tensor for all of this model's inputs must be numeric "
            f"(FP32, FP64 or an integer datatype), not {item.datatype.name}"
        )
    width = len(fields)
    if len(item.dims) != 2 or item.dims[1] != width:
        columns = ", ".join(f.name for f in fields)
        raise V2Error(
            f"input {name!r} has shape {list(item.dims)}; one tensor for all of this model's "
            f"inputs must be [N, {width}] ({width} columns, in this order: {columns}), or send "
            "one tensor per input, named after it"
        )
    return item


def _matrix_rows(
    item: _Input, fields: list[InputField], binary: memoryview
) -> list[dict[str, Any]]:
    """An [N, F] tensor → rows keyed by field name, the values exactly those the same numbers
    sent as per-input tensors give (FP32 rounded alike; NaN is None in a nullable column)."""
    row_dims = (len(fields),)
    if item.binary_size is not None:
        view = binary[item.binary_offset : item.binary_offset + item.binary_size]
        matrix = binary_column(item.name, item.datatype, item.dims, row_dims, view)
    else:
        matrix = json_column(item.name, item.datatype, item.dims, row_dims, item.data)
    if item.datatype.kind == "float":
        # Integer columns of a float tensor: whole numbers become ints (a per-input integer
        # tensor gives ints); in a nullable column NaN means missing, as in a per-input one.
        special = [(i, f) for i, f in enumerate(fields) if f.type == "integer" or f.nullable]
        if special:
            matrix = [list(row) for row in matrix]
            for number, row in enumerate(matrix):
                for index, spec in special:
                    row[index] = _matrix_value(item.name, number, spec, row[index])
    names = tuple(f.name for f in fields)
    return list(map(dict, map(zip, repeat(names), matrix)))


def _matrix_value(name: str, row: int, spec: InputField, value: Any) -> Any:
    if value is None:
        return None
    if value != value:  # noqa: PLR0124 - NaN
        return None if spec.nullable else value
    if spec.type == "integer":
        if not float(value).is_integer():
            raise V2Error(
                f"input {name!r}, row {row}: column {spec.name!r} takes integers, not {value!r}"
            )
        return int(value)
    return value


def _input(index: int, item: Any) -> _Input:
    if not isinstance(item, dict):
        raise V2Error(f"inputs[{index}] must be an object, not {json_type(item)}")
    name = item.get("name")
    if not isinstance(name, str):
        raise V2Error(f"inputs[{index}] needs a string 'name'")
    datatype_name = item.get("datatype")
    if not isinstance(datatype_name, str):
        raise V2Error(f"input {name!r} needs a 'datatype' (one of {datatype_names()})")
    datatype = DATATYPES.get(datatype_name)
    if datatype is None:
        raise V2Error(
            f"input {name!r}: unknown datatype {datatype_name!r}; expected one of "
            f"{datatype_names()}"
        )
    shape = item.get("shape")
    if not isinstance(shape, list) or not shape:
        raise V2Error(f"input {name!r} needs a 'shape': a list of dimensions, the first the rows")
    if not all(type(d) is int and d >= 0 for d in shape):
        raise V2Error(f"input {name!r}: shape {shape} must hold whole numbers >= 0")
    parameters = check_parameters(item.get("parameters"), f"input {name!r}")
    size = parameters.get("binary_data_size")
    data = item.get("data")
    if size is not None:
        if type(size) is not int or size < 0:
            raise V2Error(f"input {name!r}: binary_data_size must be a whole number of bytes")
        if data is not None:
            raise V2Error(f"input {name!r} has both 'data' and binary_data_size; give one")
    elif data is None:
        raise V2Error(
            f"input {name!r} has no data: give 'data', or binary data after the JSON header "
            "with parameters.binary_data_size"
        )
    return _Input(name, datatype, tuple(shape), data, size)


def _check_shape(item: _Input, spec: InputField) -> None:
    dims = item.dims
    if spec.shape is None:
        if len(dims) == 1 or (len(dims) == 2 and dims[1] == 1):
            return
        raise V2Error(
            f"input {item.name!r} has shape {list(dims)}; a scalar column takes [N] or [N, 1]"
        )
    if list(dims[1:]) != spec.shape:
        expected = ", ".join(map(str, spec.shape))
        raise V2Error(
            f"input {item.name!r} has shape {list(dims)}; expected [N, {expected}] "
            f"(N rows of the field's shape {spec.shape})"
        )


def _row_count(inputs: list[_Input], max_rows: int) -> int:
    first = inputs[0]
    rows = first.dims[0]
    for item in inputs[1:]:
        if item.dims[0] != rows:
            raise V2Error(
                f"inputs disagree on the number of rows: {first.name!r} has {rows}, "
                f"{item.name!r} has {item.dims[0]}"
            )
    if rows == 0:
        raise V2Error("the inputs hold 0 rows; a request needs at least one")
    if rows > max_rows:
        raise V2TooManyRows(rows, max_rows)
    return rows


def _place_binary(inputs: list[_Input], binary: memoryview, *, has_header: bool) -> None:
    """Give each binary input its slice of the data after the header; the sizes must add up."""
    offset = 0
    for item in inputs:
        if item.binary_size is None:
            continue
        if not has_header:
            raise V2Error(
                f"input {item.name!r} has binary_data_size but the request has no "
                f"{HEADER_LENGTH_HEADER} header saying where the JSON ends"
            )
        needed = expected_binary_size(item.datatype, item.dims)
        if needed is not None and needed != item.binary_size:
            raise V2Error(
                f"input {item.name!r}: binary_data_size is {item.binary_size} but shape "
                f"{list(item.dims)} of {item.datatype.name} needs {needed} bytes"
            )
        item.binary_offset = offset
        offset += item.binary_size
    if offset != len(binary):
        raise V2Error(
            f"the binary data after the JSON header is {len(binary)} bytes but the inputs' "
            f"binary_data_size add up to {offset}"
        )


# ---------------------------------------------------------------------------------------------


def _names(names: Collection[str], limit: int = 20) -> str:
    shown = list(names)[:limit]
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(shown) + more if shown else "none"


def _datatype_hint(accepted: frozenset[str]) -> str:
    return " or ".join(n for n in DATATYPES if n in accepted)


def json_type(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "null" if value is None else type(value).__name__
