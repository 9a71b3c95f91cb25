"""Rows → a pandas DataFrame whose column dtypes come from the row schema, never from the batch.

The engine batches different clients' requests together, so a column's dtype must not depend on
which rows share a batch: left to pandas, a nullable integer column is int64 until one row in
the batch is null and then float64 (9007199254740993 becomes 9007199254740992.0), and a string
column holds None alone but NaN beside a string. Here each field fixes its column's dtype and
missing-value marker whatever the other rows hold; the table is in docs/model-format.md
("DataFrame columns"). The default for nullable integers and booleans (float64 and object, NaN
for missing) is what `read_csv` gives, so a pipeline sees what it was fitted on; the python
runtime asks for pandas' nullable dtypes (Int64, boolean, `pd.NA`), which keep every int64.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from fastinfer.model.spec import InputField
from fastinfer.runtimes.base import Row

Column = Callable[[list[Any]], Any]


def _string_dtype() -> Any:
    """pandas' string dtype (`str`: NaN for missing) with Python storage: at a server's batch
    sizes it builds and transforms faster than pyarrow's (Titanic, one row: frame and pipeline
    about 20% faster). Object where pandas infers no string dtype (pandas 2 without
    `future.infer_string`)."""
    if isinstance(pd.Series(["a"]).dtype, np.dtype):
        return np.dtype(object)
    try:
        return pd.StringDtype("python", na_value=np.nan)
    except TypeError:  # pandas 2.2 with the future option: no na_value yet
        return pd.Series(["a"]).dtype


_STRING = _string_dtype()


class NullableDtypes(enum.Enum):
    """How nullable integer and boolean fields are held."""

    LIKE_CSV = "like_csv"  # float64 / object with NaN, as `read_csv` gives them
    NULLABLE = "nullable"  # pandas' Int64 / boolean with pd.NA: every value exact


def column_kind(field: InputField) -> str:
    """The type a field's column holds: its declared type, or for `any` the one kind its
    `allowed` values share; `tensor` for a field with a `shape`."""
    if field.shape is not None:
        return "tensor"
    if field.type != "any" or not field.allowed:
        return field.type
    kinds = {type(value) for value in field.allowed}
    if kinds == {bool}:
        return "boolean"
    if kinds == {int}:
        return "integer"
    if kinds <= {int, float}:
        return "number"
    if kinds == {str}:
        return "string"
    return "any"


def column_builders(
    fields: list[InputField], nullable: NullableDtypes = NullableDtypes.LIKE_CSV
) -> dict[str, Column]:
    """Field name → the function that turns that column's values into its array."""
    return {field.name: _builder(field, nullable) for field in fields}


def build_frame(
    rows: list[Row], columns: list[str], builders: Mapping[str, Column]
) -> pd.DataFrame:
    """Rows → DataFrame in `columns` order. A column without a builder (no schema bound: a
    runtime called directly) is left to pandas' inference."""
    data = {}
    for name in columns:
        values = [row.get(name) for row in rows]
        build = builders.get(name)
        data[name] = values if build is None else build(values)
    return pd.DataFrame(data, columns=columns, copy=False)


def _builder(field: InputField, nullable: NullableDtypes) -> Column:
    kind = column_kind(field)
    exact = nullable is NullableDtypes.NULLABLE
    if kind == "integer":
        if not field.nullable:
            return _int64
        return _nullable_ints if exact else _floats
    if kind == "number":
        return _floats
    if kind == "boolean":
        if not field.nullable:
            return _bools
        return _nullable_bools if exact else _objects
    if kind == "string":
        return _strings
    if kind == "tensor":
        return _cells
    return _objects


def _int64(values: list[Any]) -> Any:
    return np.array(values, dtype=np.int64)


def _floats(values: list[Any]) -> Any:
    try:
        return np.array(values, dtype=np.float64)
    except TypeError:  # None among them: missing → NaN, as pandas reads an empty CSV cell
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _nullable_ints(values: list[Any]) -> Any:
    return pd.array(values, dtype="Int64")


def _bools(values: list[Any]) -> Any:
    return np.array(values, dtype=np.bool_)


def _nullable_bools(values: list[Any]) -> Any:
    return pd.array(values, dtype="boolean")


def _strings(values: list[Any]) -> Any:
    if isinstance(_STRING, np.dtype):  # object: pandas 2 without its future string dtype
        return _objects(values)
    return pd.array(values, dtype=_STRING)  # None → the dtype's own NaN


def _objects(values: list[Any]) -> Any:
    column = np.empty(len(values), dtype=object)
    column[:] = [np.nan if v is None else v for v in values]
    # A Series, not the array: the DataFrame constructor would infer `str` from objects that
    # happen to all be strings, and object again from the next batch.
    return pd.Series(column, dtype=object, copy=False)


def _cells(values: list[Any]) -> Any:
    column = np.empty(len(values), dtype=object)
    for index, value in enumerate(values):  # one list per cell, never broadcast
        column[index] = value
    return column
