"""A fast path for rows of plain numbers (tensor models): one NumPy conversion per field.

Validating 32 rows x 256 floats through pydantic costs more than an ONNX MLP's matrix products.
For schemas whose fields are all unbounded, non-nullable `number` fields (scalar or with a
`shape`), a request is accepted here when NumPy can read every field as a finite float array of
exactly the right shape, within the float type the model reads (float32's range for a float32
graph input). Anything else — a bool, a string, a missing or extra key, a wrong length, NaN, 3.5e38
for float32 — returns None, and the pydantic validator handles the request and explains the
problem, so errors are exactly those of the strict path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

from fastinfer.model.fieldtypes import float_limit
from fastinfer.model.spec import InputField


def eligible(fields: list[InputField]) -> bool:
    return bool(fields) and all(
        f.type == "number"
        and f.allowed is None
        and f.minimum is None
        and f.maximum is None
        and not f.nullable
        for f in fields
    )


class NumericRows:
    def __init__(
        self,
        fields: list[InputField],
        max_rows: int,
        dtypes: Mapping[str, np.dtype[Any] | None] | None = None,
    ) -> None:
        """`dtypes`: the float type the model reads a field as, where narrower than float64: a
        value it would overflow (float32: 3.5e38) takes the strict path, which refuses it."""
        given = dtypes or {}
        self._fields = [(f.name, tuple(f.shape or ()), _limit(given.get(f.name))) for f in fields]
        self._max_rows = max_rows

    def parse(self, body: bytes) -> list[dict[str, Any]] | None:
        """Validated rows (each field a float64 array or float), or None to take the strict path."""
        if b"true" in body or b"false" in body:
            return None  # NumPy reads bools as numbers; the strict validator refuses them
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if type(data) is not dict or len(data) != 1:
            return None
        inputs = data.get("inputs")
        if type(inputs) is not list or not 0 < len(inputs) <= self._max_rows:
            return None
        width = len(self._fields)
        if any(type(row) is not dict or len(row) != width for row in inputs):
            return None
        columns: list[tuple[str, Any]] = []
        for name, shape, limit in self._fields:
            try:
                array = np.array([row[name] for row in inputs])
            except (KeyError, ValueError):
                return None
            if array.dtype.kind not in "fi" or array.shape != (len(inputs), *shape):
                return None
            floats = array.astype(np.float64, copy=False)
            if not -limit < floats.min() <= floats.max() < limit:  # NaN fails both: no copy
                return None
            columns.append((name, floats))
        return [
            {name: (array[i] if array.ndim > 1 else float(array[i])) for name, array in columns}
            for i in range(len(inputs))
        ]


def _limit(dtype: np.dtype[Any] | None) -> float:
    limit = float_limit(dtype) if dtype is not None else None
    return math.inf if limit is None else limit
