"""The pydantic type of each input field: one set of rules for every protocol and path.

Built once per model from its `InputField`s (docs/model-format.md, "Validation"):

- an `integer` is a JSON integer within int64, whatever its `minimum`/`maximum` say (runtimes build
  int64 arrays; beyond it a row was an OverflowError, a 500);
- a value with `allowed` is checked strictly by the field's type first, then against the list (a
  literal alone takes `true` for 1 and 1.0 for 1: Python's equality, not JSON's types);
- a field the model reads at a narrower precision than the schema's own (a float32 graph input, an
  int32 one) takes only what that precision holds: 3.5e38 is refused rather than read as inf.

Every check runs inside pydantic-core: nothing here adds Python work per value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, NotRequired, Optional

import numpy as np
from pydantic import Field, GetPydanticSchema
from pydantic.fields import FieldInfo
from pydantic_core import core_schema

from fastinfer.model.spec import InputField

_BASE_TYPES: dict[str, Any] = {
    "integer": int,
    "number": float,
    "string": str,
    "boolean": bool,
    "any": int | float | str | bool | None,
}
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_STRICT_KINDS: dict[type, core_schema.CoreSchema] = {
    bool: core_schema.bool_schema(strict=True),
    int: core_schema.int_schema(strict=True),
    float: core_schema.float_schema(strict=True, allow_inf_nan=False),
    str: core_schema.str_schema(strict=True),
}
_DECLARED_KINDS: dict[str, type] = {"integer": int, "number": float, "string": str, "boolean": bool}
# The magnitude from which a float64 rounds to infinity in each narrower float type, and how
# error messages name that range: float32 → 2**128 · (1 - 2**-25), float16 → 65520.
FLOAT_LIMITS: dict[float, str] = {}


def float_limit(dtype: np.dtype[Any]) -> float | None:
    """Where values overflow a float type narrower than float64 (None for any other dtype).

    Values below it round to a finite value (3.4028235e38, float32's largest finite value as
    clients print it, is fine); from it on they round to infinity."""
    if dtype.kind != "f" or dtype.itemsize >= 8:
        return None
    info = np.finfo(dtype)
    limit = 2.0**info.maxexp * (1.0 - 2.0 ** -(info.nmant + 2))
    FLOAT_LIMITS[limit] = f"{dtype.name}'s range (±{float(info.max):.8g})"
    return limit


def field_annotation(spec: InputField, max_string: int, dtype: np.dtype[Any] | None) -> Any:
    """The annotation of one field in the row's TypedDict; `dtype` is what the model reads the
    field as, where the runtime says (None: the schema's own float64 and int64)."""
    base = _base_type(spec, max_string)
    low, high, limit = _bounds(spec, dtype)
    if spec.shape is not None:
        element = base
        if spec.type == "number":
            element = Annotated[base, Field(allow_inf_nan=False, gt=_neg(limit), lt=limit)]
        elif spec.type == "integer" and spec.allowed is None:
            lowest, highest = _integer_range(dtype)  # a tensor's minimum/maximum: not per element
            element = Annotated[base, Field(ge=lowest, le=highest)]
        for size in reversed(spec.shape):
            element = Annotated[list_of(element), Field(min_length=size, max_length=size)]
        annotated_tensor: Any = Annotated[element, Field(description=spec.description)]
        if spec.nullable:
            return NotRequired[Optional[annotated_tensor]]  # noqa: UP045
        return annotated_tensor
    info = FieldInfo.merge_field_infos(
        Field(
            description=spec.description,
            ge=low,
            le=high,
            gt=_neg(limit),
            lt=limit,
            max_length=min(spec.max_length or max_string, max_string)
            if spec.type == "string" and spec.allowed is None
            else spec.max_length,
            allow_inf_nan=False if spec.type == "number" else None,
        )
    )
    annotated: Any = Annotated[base, info]
    if spec.nullable:
        return NotRequired[Optional[annotated]]  # noqa: UP045 - a runtime typing form is built here
    return annotated


def field_dtypes(
    fields: list[InputField], dtypes: Mapping[str, np.dtype[Any]] | None
) -> dict[str, np.dtype[Any] | None]:
    """Each field's dtype from a runtime's answer (fields it does not name: None)."""
    given = dtypes or {}
    return {f.name: np.dtype(given[f.name]) if f.name in given else None for f in fields}


def list_of(item: Any) -> Any:
    """`list[item]` for an item type that only exists at run time."""
    return list.__class_getitem__(item)


def _bounds(
    spec: InputField, dtype: np.dtype[Any] | None
) -> tuple[float | int | None, float | int | None, float | None]:
    """(minimum, maximum, float overflow magnitude): an integer's within int64 and `dtype`'s
    range; a number's float limit when the model reads it at a narrower float precision. An
    `allowed` list is its own bound."""
    if spec.allowed is not None:
        return spec.minimum, spec.maximum, None
    if spec.type == "number":
        return spec.minimum, spec.maximum, float_limit(dtype) if dtype is not None else None
    if spec.type != "integer":
        return spec.minimum, spec.maximum, None
    lowest, highest = _integer_range(dtype)
    low = lowest if spec.minimum is None else max(spec.minimum, lowest)
    high = highest if spec.maximum is None else min(spec.maximum, highest)
    return low, high, None


def _integer_range(dtype: np.dtype[Any] | None) -> tuple[int, int]:
    """What an integer may be: int64's range, narrowed to `dtype`'s if it is an integer type."""
    if dtype is None or dtype.kind not in "iu":
        return INT64_MIN, INT64_MAX
    info = np.iinfo(dtype)
    return max(int(info.min), INT64_MIN), min(int(info.max), INT64_MAX)


def _neg(limit: float | None) -> float | None:
    return None if limit is None else -limit


def _base_type(spec: InputField, max_string: int) -> Any:
    """The field's scalar type; strings are capped by `max_string` (an `any` field's too), and
    an `any` field takes no NaN/Infinity (pydantic reads the `NaN` literal that some JSON
    writers emit)."""
    if spec.allowed is not None:
        return _allowed_type(spec)
    if spec.type == "any":
        capped = Annotated[str, Field(max_length=max_string)]
        finite = Annotated[float, Field(allow_inf_nan=False)]
        return int | finite | capped | bool | None
    if spec.type == "string" and spec.shape is not None:
        return Annotated[str, Field(max_length=min(spec.max_length or max_string, max_string))]
    return _BASE_TYPES[spec.type]


def _allowed_type(spec: InputField) -> Any:
    """One of the `allowed` values, of the field's type: checked strictly first (an integer
    field's `true` or `10.0` is refused as on v2, not matched to 1 or 10), then against the list.
    An `any` field takes each allowed value's own type."""
    assert spec.allowed is not None
    literal: Any = Literal[tuple(spec.allowed)]
    declared = _DECLARED_KINDS.get(spec.type)
    kinds = [declared] if declared is not None else list(dict.fromkeys(map(type, spec.allowed)))
    steps: list[core_schema.CoreSchema] = [_STRICT_KINDS[k] for k in kinds if k in _STRICT_KINDS]
    first = steps[0] if len(steps) == 1 else _one_of(steps, spec.allowed)

    def chained(source: Any, handler: Any) -> core_schema.CoreSchema:
        listed = handler(source)
        publish = [lambda _schema, json_handler: json_handler(listed)]  # not the first step's
        metadata = {"pydantic_js_functions": publish}
        return core_schema.chain_schema([first, listed], metadata=metadata)

    return Annotated[literal, GetPydanticSchema(chained)]


def _one_of(steps: list[core_schema.CoreSchema], allowed: list[Any]) -> core_schema.CoreSchema:
    """Any of the allowed values' types; a value of none of them is told the list."""
    shown = [repr(value) for value in allowed]
    listed = shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"
    choices: list[core_schema.CoreSchema | tuple[core_schema.CoreSchema, str]] = list(steps)
    return core_schema.union_schema(
        choices, custom_error_type="literal_error", custom_error_context={"expected": listed}
    )
