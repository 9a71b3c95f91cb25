"""JSON tensor data → the values its declared datatype holds, exactly as binary data gives them.

A v2 tensor's datatype is part of its meaning: `FP32 [0.1]` is the float32 nearest 0.1, which is
what the same tensor sent as binary data carries. JSON numbers are read as float64 (or int), so
float data is rounded here to the declared precision (FP32, FP16, BF16; FP64 integers become
floats) and integer data is checked against the datatype's range, and the JSON and binary forms of
one tensor reach the model as the same values. A number the datatype cannot hold (3.5e38 as FP32)
is a 400 naming the input and row, as an out-of-range integer is.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from math import prod
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

_STRUCT_CODES = {"FP16": "e", "FP32": "f", "FP64": "d"}  # struct's half, single, double


DatatypeKind = Literal["bool", "int", "float", "bytes"]


@dataclass(frozen=True, slots=True)
class Datatype:
    """One v2 datatype: its wire layout and the Python values its JSON data may hold."""

    name: str
    kind: DatatypeKind
    wire: np.dtype[Any] | None  # little-endian element layout; None for BYTES (length-prefixed)

    @property
    def itemsize(self) -> int | None:
        """Bytes per element in binary data, or None for BYTES (variable length)."""
        if self.name == "BF16":
            return 2
        return None if self.wire is None else self.wire.itemsize


class OutOfRange(ValueError):  # noqa: N818 - the codec turns it into its V2Error
    """A value the declared datatype cannot hold."""


def conform(
    name: str, datatype: Datatype, flat: list[Any], row_dims: Sequence[int], kinds: set[type]
) -> list[Any]:
    """`flat` (row-major JSON values, None for null; `kinds` their types) as the datatype holds
    them: the same list when nothing changes."""
    has_null = type(None) in kinds
    if not flat:
        return flat
    if datatype.kind == "int":
        _check_integers(name, datatype, flat, row_dims, has_null=has_null)
        return flat
    if datatype.kind != "float" or (datatype.name == "FP64" and kinds <= {float, type(None)}):
        return flat  # booleans, strings, and FP64 data that is float64 already
    if not has_null:
        return _rounded(name, datatype, flat, row_dims)
    present = [i for i, v in enumerate(flat) if v is not None]
    values = _rounded(name, datatype, [flat[i] for i in present], row_dims, present)
    out: list[Any] = [None] * len(flat)
    for index, value in zip(present, values, strict=True):
        out[index] = value
    return out


def _rounded(
    name: str,
    datatype: Datatype,
    values: list[Any],
    row_dims: Sequence[int],
    positions: list[int] | None = None,
) -> list[Any]:
    """Float (or integer) JSON numbers → Python floats of the datatype's precision. (orjson
    reads every JSON number as a finite float64 or an integer within 64 bits.)"""
    code = _STRUCT_CODES.get(datatype.name)
    if code is None:  # BF16: no struct code
        narrow = _bfloat16(np.asarray(values, dtype=np.float64))
        if np.isfinite(narrow).all():
            result: list[Any] = narrow.tolist()
            return result
    else:
        layout = f"<{len(values)}{code}"
        try:  # packing rounds as a C cast does (to nearest, ties to even), in one call
            return list(struct.unpack(layout, struct.pack(layout, *values)))
        except OverflowError:
            pass
    index = next(i for i, v in enumerate(values) if not _fits(v, datatype))
    where = positions[index] if positions is not None else index
    raise OutOfRange(
        f"input {name!r}, row {_row(where, row_dims)}: {values[index]!r} is out of range "
        f"for {datatype.name} (±{_largest(datatype):.8g})"
    )


def _fits(value: Any, datatype: Datatype) -> bool:
    code = _STRUCT_CODES.get(datatype.name)
    if code is None:
        return bool(np.isfinite(_bfloat16(np.asarray([value], dtype=np.float64))).all())
    try:
        struct.pack(f"<{code}", value)  # standard size: overflow raises (native packs inf)
    except OverflowError:
        return False
    return True


def _bfloat16(wide: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    """Round to bfloat16 (the top half of a float32, nearest-even), widened back to float32: the
    value binary BF16 data of the same tensor carries."""
    with np.errstate(over="ignore"):
        single = wide.astype(np.float32)
    bits = single.view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    result: npt.NDArray[np.float32] = rounded.astype(np.uint32).view(np.float32)
    return result


def _largest(datatype: Datatype) -> float:
    if datatype.name == "BF16":
        return float(np.frombuffer(np.uint32(0x7F7F0000).tobytes(), dtype=np.float32)[0])
    assert datatype.wire is not None
    return float(np.finfo(datatype.wire).max)


def _check_integers(
    name: str, datatype: Datatype, flat: list[Any], row_dims: Sequence[int], *, has_null: bool
) -> None:
    assert datatype.wire is not None
    info = np.iinfo(datatype.wire)
    values = [v for v in flat if v is not None] if has_null else flat
    if not values:
        return
    low, high = min(values), max(values)
    if low < int(info.min) or high > int(info.max):
        bad = low if low < int(info.min) else high
        raise OutOfRange(
            f"input {name!r}, row {_row(flat.index(bad), row_dims)}: {bad} is out of range for "
            f"{datatype.name} ({int(info.min)}..{int(info.max)})"
        )


def _row(index: int, row_dims: Sequence[int]) -> int:
    """The row of the `index`-th element of row-major data whose rows hold `row_dims`."""
    return index // prod(row_dims) if row_dims else index
