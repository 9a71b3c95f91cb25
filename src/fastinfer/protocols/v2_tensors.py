"""Open Inference Protocol v2 tensors: datatypes, and tensor data to and from Python columns.

Requests arrive as tensors but the data plane works on rows, so every input tensor becomes one
column (a list with one value per row) that `v2.decode_infer_request` zips into rows. Binary data
(Triton's binary tensor data extension) goes through `np.frombuffer(...).tolist()` in one step;
JSON data is already Python objects: it is checked (element types with one `set(map(type, ...))`
pass), brought to its datatype's values in one NumPy step where they differ (FP32 data rounded
to float32, as binary data of the same tensor is: `v2_values.py`) and reshaped.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from math import prod
from typing import Any

import numpy as np
import numpy.typing as npt

from fastinfer.model.spec import FieldType
from fastinfer.protocols.v2_values import Datatype, DatatypeKind, OutOfRange, conform


class V2Error(ValueError):
    """A request the v2 protocol rejects: a client error (400, `{"error": str(exc)}`)."""


class V2TooManyRows(V2Error):  # noqa: N818 - V2Error is the family name the routes catch
    """More rows than one request may carry; the route may answer 413 rather than 400."""

    def __init__(self, rows: int, limit: int) -> None:
        self.rows = rows
        self.limit = limit
        super().__init__(
            f"the request has {rows} rows; at most {limit} are accepted in one request"
        )


def _dt(name: str, kind: DatatypeKind, wire: str | None) -> Datatype:
    return Datatype(name, kind, np.dtype(wire) if wire is not None else None)


DATATYPES: dict[str, Datatype] = {
    d.name: d
    for d in (
        _dt("BOOL", "bool", "u1"),
        _dt("INT8", "int", "<i1"),
        _dt("INT16", "int", "<i2"),
        _dt("INT32", "int", "<i4"),
        _dt("INT64", "int", "<i8"),
        _dt("UINT8", "int", "<u1"),
        _dt("UINT16", "int", "<u2"),
        _dt("UINT32", "int", "<u4"),
        _dt("UINT64", "int", "<u8"),
        _dt("FP16", "float", "<f2"),
        _dt("FP32", "float", "<f4"),
        _dt("FP64", "float", "<f8"),
        # Triton's bfloat16: the top half of a float32. Binary only in tritonclient; JSON numbers
        # are accepted like any float.
        _dt("BF16", "float", "<f4"),
        _dt("BYTES", "bytes", None),
    )
}
_INTEGER = frozenset(n for n, d in DATATYPES.items() if d.kind == "int")
_FLOAT = frozenset(n for n, d in DATATYPES.items() if d.kind == "float")

FIELD_DATATYPES: dict[FieldType, str] = {
    "integer": "INT64",
    "number": "FP64",
    "string": "BYTES",
    "boolean": "BOOL",
    "any": "BYTES",  # what metadata advertises; an `any` field accepts every datatype
}
# The datatypes whose values a field of each type can take without a lossy or surprising
# conversion: integers widen to numbers; nothing else crosses over (booleans are not integers).
ACCEPTED_DATATYPES: dict[FieldType, frozenset[str]] = {
    "integer": _INTEGER,
    "number": _INTEGER | _FLOAT,
    "string": frozenset({"BYTES"}),
    "boolean": frozenset({"BOOL"}),
    "any": frozenset(DATATYPES),
}
_JSON_TYPES: dict[DatatypeKind, frozenset[type]] = {
    "bool": frozenset({bool, type(None)}),
    "int": frozenset({int, type(None)}),
    "float": frozenset({int, float, type(None)}),
    "bytes": frozenset({str, type(None)}),
}
_U32 = struct.Struct("<I")
_ORJSON_NUMPY = frozenset(
    np.dtype(t) for t in ("?", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8")
)


def datatype_names() -> str:
    return ", ".join(DATATYPES)


# ---------------------------------------------------------------------------------------------
# Request tensors → columns


def json_column(
    name: str, datatype: Datatype, dims: Sequence[int], row_dims: Sequence[int], data: Any
) -> list[Any]:
    """JSON `data` (flat row-major, or nested to `dims`) → one value per row.

    `row_dims` is the per-row shape the field wants (empty for a scalar column, which also
    takes [N, 1]). Nulls pass through as None: the row schema decides whether they are allowed.
    """
    if not isinstance(data, list):
        raise V2Error(f"input {name!r}: 'data' must be a list, not {_json_kind(data)}")
    flat = _flatten(name, dims, data)
    kinds = set(map(type, flat))
    allowed = _JSON_TYPES[datatype.kind]
    if not kinds <= allowed:
        bad = next(v for v in flat if type(v) not in allowed)
        if isinstance(bad, list):
            raise V2Error(f"input {name!r}: 'data' nests deeper than the shape {list(dims)}")
        raise V2Error(
            f"input {name!r}: datatype {datatype.name} cannot hold {_json_kind(bad)} "
            f"{_show_value(bad)} in 'data'"
        )
    try:
        values = conform(name, datatype, flat, row_dims, kinds)
    except OutOfRange as exc:
        raise V2Error(str(exc)) from None
    if not row_dims:
        return values
    if values is flat and len(dims) > 1 and data and isinstance(data[0], list):
        return data  # already nested to [N, *row_dims]: exactly the per-row values
    return _nest(values, row_dims)


def binary_column(
    name: str, datatype: Datatype, dims: Sequence[int], row_dims: Sequence[int], raw: memoryview
) -> list[Any]:
    """Binary tensor data (little-endian, row-major) → one value per row."""
    count = prod(dims)
    if datatype.kind == "bytes":
        return _nest(_split_bytes(name, raw, count), row_dims)
    if datatype.name == "BF16":
        halves = np.frombuffer(raw, dtype="<u2").astype("<u4") << 16
        array: npt.NDArray[Any] = halves.view("<f4")
    elif datatype.kind == "bool":
        array = np.frombuffer(raw, dtype=np.uint8) != 0
    else:
        assert datatype.wire is not None
        array = np.frombuffer(raw, dtype=datatype.wire)
    values: list[Any] = array.reshape(dims[0], *row_dims).tolist()
    return values


def expected_binary_size(datatype: Datatype, dims: Sequence[int]) -> int | None:
    """Bytes a binary tensor of this datatype and shape must have (None for BYTES)."""
    itemsize = datatype.itemsize
    return None if itemsize is None else itemsize * prod(dims)


def _flatten(name: str, dims: Sequence[int], data: list[Any]) -> list[Any]:
    """Flat or fully nested data → the flat row-major elements, checking the nesting."""
    total = prod(dims)
    if len(dims) > 1 and data and isinstance(data[0], list):
        if len(data) != dims[0]:
            raise V2Error(
                f"input {name!r}: nested 'data' has {len(data)} items at the top level; "
                f"the shape {list(dims)} needs {dims[0]}"
            )
        level = data
        for size in dims[1:]:
            if not all(type(item) is list and len(item) == size for item in level):
                raise V2Error(
                    f"input {name!r}: 'data' is neither flat nor nested to the shape {list(dims)}"
                )
            level = list(chain.from_iterable(level))
        return level
    if len(data) != total:
        raise V2Error(
            f"input {name!r}: 'data' has {len(data)} elements; the shape {list(dims)} needs {total}"
        )
    return data


def _nest(flat: list[Any], row_dims: Sequence[int]) -> list[Any]:
    """Flat row-major values → one nested list per row (slices, no per-element work)."""
    level = flat
    for size in reversed(row_dims):
        level = [level[i : i + size] for i in range(0, len(level), size)]
    return level


def _split_bytes(name: str, raw: memoryview, count: int) -> list[str]:
    """BYTES binary data: `count` elements, each a 4-byte little-endian length then UTF-8."""
    data = bytes(raw)
    end = len(data)
    offset = 0
    unpack = _U32.unpack_from
    values: list[str] = []
    append = values.append
    index = 0
    try:
        for index in range(count):
            if offset + 4 > end:
                raise V2Error(
                    f"input {name!r}: BYTES binary data ends inside element {index} "
                    f"(the shape needs {count} elements)"
                )
            (length,) = unpack(data, offset)
            offset += 4
            stop = offset + length
            if stop > end:
                raise V2Error(
                    f"input {name!r}: BYTES element {index} claims {length} bytes but only "
                    f"{end - offset} remain"
                )
            append(data[offset:stop].decode("utf-8"))
            offset = stop
    except UnicodeDecodeError as exc:
        raise V2Error(f"input {name!r}: BYTES element {index} is not valid UTF-8 ({exc})") from None
    if offset != end:
        raise V2Error(
            f"input {name!r}: {end - offset} bytes left over after the {count} BYTES elements "
            "the shape holds"
        )
    return values


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _show_value(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# ---------------------------------------------------------------------------------------------
# Response tensors


@dataclass(frozen=True, slots=True)
class OutputTensor:
    """One response tensor. `data` is a NumPy array of the datatype, or for BYTES a flat
    row-major list of str; `shape` is authoritative either way."""

    name: str
    datatype: str
    shape: list[int]
    data: npt.NDArray[Any] | list[str]

    def json_data(self) -> Any:
        """Flat row-major data for the JSON body (arrays go to orjson as they are: fast)."""
        if isinstance(self.data, list):
            return self.data
        flat = np.ascontiguousarray(self.data).reshape(-1)
        return flat if flat.dtype in _ORJSON_NUMPY else flat.tolist()

    def binary_data(self) -> bytes:
        """The tensor in Triton's binary layout: little-endian, row-major, BYTES length-prefixed."""
        if self.datatype == "BYTES":
            encoded = [
                v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in _flat(self.data)
            ]
            prefixes = map(_U32.pack, map(len, encoded))
            return b"".join(chain.from_iterable(zip(prefixes, encoded, strict=True)))
        datatype = DATATYPES.get(self.datatype)
        if datatype is None or datatype.wire is None or datatype.name == "BF16":
            raise ValueError(
                f"output {self.name!r}: cannot write datatype {self.datatype} as binary"
            )
        array = np.ascontiguousarray(self.data, dtype=datatype.wire)
        return array.tobytes()


def _flat(data: npt.NDArray[Any] | list[str]) -> list[Any]:
    return data if isinstance(data, list) else np.asarray(data).reshape(-1).tolist()


def stack_values(name: str, values: list[Any]) -> OutputTensor:
    """One output's per-row values → a tensor [N, ...] with the datatype the values imply.

    bool → BOOL, int → INT64, float (or int mixed with float) → FP64, str → BYTES. A map per row
    (a ZipMap's {class: probability}) becomes FP64 [N, K] in the first row's key order.
    """
    if values and isinstance(values[0], dict):
        values = _maps_to_rows(name, values)
    try:
        stacked = np.array(values, dtype=object)
    except ValueError:
        raise ValueError(f"output {name!r}: rows hold values of different shapes") from None
    flat = stacked.reshape(-1).tolist()
    shape = list(stacked.shape)
    datatype = _infer_datatype(name, set(map(type, flat)))
    if datatype == "BYTES":
        return OutputTensor(name, "BYTES", shape, flat)
    wire = DATATYPES[datatype].wire
    try:
        array = np.array(flat, dtype=wire).reshape(shape)
    except OverflowError:
        raise ValueError(f"output {name!r}: an integer does not fit {datatype}") from None
    return OutputTensor(name, datatype, shape, array)


def _maps_to_rows(name: str, values: list[Any]) -> list[Any]:
    keys = list(values[0])
    try:
        return [[row[k] for k in keys] for row in values]
    except (KeyError, TypeError):
        raise ValueError(f"output {name!r}: rows are maps with different keys") from None


def _infer_datatype(name: str, kinds: set[type]) -> str:
    found: set[str] = set()
    for kind in kinds:
        if issubclass(kind, bool | np.bool_):
            found.add("BOOL")
        elif issubclass(kind, int | np.integer):
            found.add("INT64")
        elif issubclass(kind, float | np.floating):
            found.add("FP64")
        elif issubclass(kind, str):
            found.add("BYTES")
        elif kind is type(None):
            raise ValueError(f"output {name!r} holds null values, which a v2 tensor cannot carry")
        elif issubclass(kind, list | tuple | dict):
            raise ValueError(f"output {name!r}: rows hold values of different shapes")
        else:
            raise ValueError(f"output {name!r} holds {kind.__name__} values, not a tensor type")
    if found <= {"INT64", "FP64"} and found != {"INT64"}:
        return "FP64"
    if len(found) == 1:
        return found.pop()
    raise ValueError(
        f"output {name!r} mixes value types ({', '.join(sorted(found))}), so no one datatype fits"
    )
