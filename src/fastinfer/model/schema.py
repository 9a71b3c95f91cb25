"""Typed row schemas built from a model's input fields.

Each model gets a pydantic-core validator for its whole request body, so the bytes of a request are
parsed and validated in one pass (no FastAPI body model on the hot path) while OpenAPI still shows
the exact row type. Rows validate to plain dicts, which is what runtimes consume.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, cast

import numpy as np
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, WrapValidator
from pydantic_core import PydanticCustomError
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

from fastinfer.model import fastvalidate
from fastinfer.model.fastvalidate import NumericRows
from fastinfer.model.fieldtypes import FLOAT_LIMITS, field_annotation, field_dtypes, list_of
from fastinfer.model.spec import InputField

_ROW_DEPTH = 3  # `{"inputs": [{...}]}`: a row's values sit inside three containers

_SHOULD = re.compile(r"^(?:Input|String|Value|List|Dictionary|Object) should ")


@dataclass(frozen=True, slots=True)
class InputLimits:
    """Caps that hold whatever a model.yaml says: no input can make the server hold huge
    strings, deep structures or unbounded rows (the body size caps the rest)."""

    max_string_length: int = 65_536
    max_depth: int = 32
    max_fields: int = 1024


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One thing wrong with one request, located as precisely as the input allows."""

    row: int | None
    field: str | None
    problem: str
    type: str

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "field": self.field, "problem": self.problem, "type": self.type}


class InvalidRowsError(ValueError):
    """The body parsed but does not fit the schema (422)."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        self.problems = problems
        first = problems[0]
        where = (
            f"row {first.row}, field {first.field!r}: "
            if first.row is not None and first.field is not None
            else f"row {first.row}: "
            if first.row is not None
            else ""
        )
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"{where}{first.problem}{more}")


class MalformedBodyError(ValueError):
    """The body is not valid JSON (400)."""


class TooManyRowsError(ValueError):
    """More rows than the service accepts in one request (413)."""

    def __init__(self, actual: int, limit: int) -> None:
        self.actual = actual
        self.limit = limit
        super().__init__(f"{actual} rows in one request; at most {limit} are accepted")


def pascal_case(name: str) -> str:
    """`car_evaluation` → `CarEvaluation`, for schema names in OpenAPI."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", name) if part)


def _typed_dict(name: str, fields: dict[str, Any], config: ConfigDict) -> Any:
    """A TypedDict made at run time; it validates to a plain dict, faster than a model."""
    factory: Any = TypedDict
    typed = factory(name, fields)
    typed.__pydantic_config__ = config
    return typed


def _depth(value: Any, limit: int) -> bool:
    """Whether `value` nests at most `limit` containers deep (stops at the first too deep)."""
    if type(value) is dict:
        return limit > 0 and all(_depth(v, limit - 1) for v in value.values())
    if type(value) is list:
        return limit > 0 and all(_depth(v, limit - 1) for v in value)
    return True


def _open_row_guard(limits: InputLimits) -> WrapValidator:
    """For models that allow (and ignore) extra fields: cap a row's keys and the nesting of
    what it holds, which no field type bounds. Rows of closed schemas never need it."""
    max_fields, max_depth = limits.max_fields, limits.max_depth - _ROW_DEPTH

    def guard(value: Any, handler: Any) -> Any:
        if type(value) is dict:
            if len(value) > max_fields:
                raise PydanticCustomError(
                    "too_many_fields",
                    "the row has {fields} fields; at most {max_fields} are accepted",
                    {"fields": len(value), "max_fields": max_fields},
                )
            if not all(_depth(v, max_depth) for v in value.values()):
                raise PydanticCustomError(
                    "too_deep",
                    "a value nests deeper than {max_depth} levels (the body's limit)",
                    {"max_depth": max_depth + _ROW_DEPTH},
                )
        return handler(value)

    return WrapValidator(guard)


class RowSchema:
    """Validator, JSON schema and column order for one model's input rows."""

    def __init__(
        self,
        model_name: str,
        fields: list[InputField],
        *,
        allow_extra: bool,
        max_rows: int,
        example: dict[str, Any] | None,
        limits: InputLimits | None = None,
        dtypes: Mapping[str, np.dtype[Any]] | None = None,
    ) -> None:
        """`dtypes`: what the model reads some fields as, where narrower than float64/int64
        (`Runtime.input_dtypes`); values those types cannot hold are refused."""
        limits = limits or InputLimits()
        self.fields = fields
        self.dtypes = dtypes
        self.allow_extra = allow_extra
        self.limits = limits
        self.columns = [f.name for f in fields]
        self.max_rows = max_rows
        self.example = example
        prefix = pascal_case(model_name)
        self.row_name = f"{prefix}Row"
        self.request_name = f"{prefix}PredictRequest"
        extra: Any = {"examples": [example]} if example is not None else None
        types = field_dtypes(fields, dtypes)
        row_type = _typed_dict(
            self.row_name,
            {f.name: field_annotation(f, limits.max_string_length, types[f.name]) for f in fields},
            ConfigDict(
                title=self.row_name,
                extra="ignore" if allow_extra else "forbid",
                strict=True,
                json_schema_extra=extra,
            ),
        )
        if allow_extra:
            row_type = Annotated[row_type, _open_row_guard(limits)]
        request_type = _typed_dict(
            self.request_name,
            {"inputs": Annotated[list_of(row_type), Field(min_length=1, max_length=max_rows)]},
            ConfigDict(title=self.request_name, extra="forbid"),
        )
        self._request: TypeAdapter[dict[str, list[dict[str, Any]]]] = TypeAdapter(request_type)
        self._rows: TypeAdapter[list[dict[str, Any]]] = TypeAdapter(list_of(row_type))
        self._row_schema: dict[str, Any] = TypeAdapter(row_type).json_schema()
        eligible = fastvalidate.eligible(fields)
        self._numeric = NumericRows(fields, max_rows, types) if eligible else None

    def renamed(self, model_name: str) -> RowSchema:
        """The same schema under `model_name`'s type names (each version's in the OpenAPI
        document): every setting carried over, so what is published is what is enforced."""
        return RowSchema(
            model_name,
            self.fields,
            allow_extra=self.allow_extra,
            max_rows=self.max_rows,
            example=self.example,
            limits=self.limits,
            dtypes=self.dtypes,
        )

    def parse_request(self, body: bytes) -> list[dict[str, Any]]:
        """Bytes of `{"inputs": [...]}` → validated rows with every column present."""
        if self._numeric is not None:
            rows = self._numeric.parse(body)
            if rows is not None:
                return rows
        try:
            parsed = self._request.validate_json(body)
        except ValidationError as exc:
            envelope = _envelope_problem(exc, set(self.columns))
            if envelope is not None:
                raise InvalidRowsError([envelope]) from None
            raise _translate(exc, row_offset=0) from None
        return self._complete(parsed["inputs"])

    def validate_rows(self, rows: list[Any], *, row_offset: int = 0) -> list[dict[str, Any]]:
        """Already-decoded rows (from a file, the CLI, the self-test) → validated rows."""
        try:
            validated = self._rows.validate_python(rows)
        except ValidationError as exc:
            raise _translate(exc, row_offset=row_offset) from None
        return self._complete(validated)

    def _complete(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Every column present (None when left out); complete rows are passed through."""
        columns = self.columns
        width = len(columns)
        return [
            row if len(row) == width else {name: row.get(name) for name in columns} for row in rows
        ]

    def row_json_schema(self) -> dict[str, Any]:
        """JSON schema of one row, self-contained (for model metadata)."""
        return self._row_schema

    def json_schemas(self, ref_template: str) -> dict[str, Any]:
        """The request schema and its row schema, keyed by name, for OpenAPI components."""
        schema = self._request.json_schema(ref_template=ref_template)
        defs = cast(dict[str, Any], schema.pop("$defs", {}))
        return {**defs, self.request_name: schema}


_ENVELOPE = 'the body must be {"inputs": [row, ...]}'
_JSON_TYPES = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}


def _envelope_problem(exc: ValidationError, columns: set[str]) -> FieldProblem | None:
    """One problem saying what the body must look like, when its shape (not a row) is wrong:
    a bare row was reported as "inputs missing" plus an "unknown field" for each of its own
    fields, which sent people looking for a typo in their data."""
    errors = [
        e
        for e in exc.errors(include_url=False)
        if e["type"] not in ("json_invalid", "too_long") and len(e["loc"]) <= 1
    ]
    if not errors:
        return None
    first = errors[0]
    extra = [str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden"]
    if first["loc"] == ():  # not an object at all
        value = first.get("input")
        if isinstance(value, list):
            problem = f"{_ENVELOPE}, not a bare list of rows"
        else:
            kind = _JSON_TYPES.get(type(value), "a number" if value is not None else "null")
            problem = f"{_ENVELOPE}, not {kind}"
    elif first["loc"] == ("inputs",) and first["type"] == "missing":
        if extra and set(extra) & columns:
            problem = f'{_ENVELOPE}: this looks like one row; send {{"inputs": [{{...}}]}}'
        elif extra:
            keys = ", ".join(repr(k) for k in extra)
            problem = f'{_ENVELOPE}: it has {keys} and no "inputs"'
        else:
            problem = f'{_ENVELOPE}: "inputs" is missing'
    elif first["loc"] == ("inputs",) and first["type"] == "too_short":
        problem = f'{_ENVELOPE}: "inputs" must hold at least one row'
    elif first["loc"] == ("inputs",):
        problem = f'{_ENVELOPE}: "inputs" must be a list of rows, even for one row'
    else:
        keys = ", ".join(repr(k) for k in extra)
        problem = f'{_ENVELOPE}: {keys} is not part of it (only "inputs")'
    return FieldProblem(row=None, field=None, problem=problem, type=first["type"])


def _translate(exc: ValidationError, *, row_offset: int) -> ValueError:
    problems: list[FieldProblem] = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = err["loc"]
        kind = err["type"]
        if kind == "json_invalid":
            detail = err["msg"].removeprefix("Invalid JSON: ")
            if detail.startswith("recursion limit exceeded"):
                detail = f"it nests too deep ({detail})"
            return MalformedBodyError(f"the body is not valid JSON: {detail}")
        if kind == "too_long" and loc == ("inputs",):
            ctx = err.get("ctx", {})
            return TooManyRowsError(int(ctx.get("actual_length", 0)), int(ctx.get("max_length", 0)))
        path = list(loc[1:]) if loc[:1] == ("inputs",) else list(loc)
        row = path[0] if path and isinstance(path[0], int) else None
        rest = path[1:] if row is not None else path
        if rest:
            field: str | None = str(rest[0]) + "".join(f"[{i}]" for i in rest[1:])
        else:
            field = None if row is not None else (".".join(map(str, loc)) or None)
        problems.append(
            FieldProblem(
                row=row + row_offset if row is not None else None,
                field=field,
                problem=_describe(err["msg"], kind, field, err.get("ctx")),
                type=kind,
            )
        )
    return InvalidRowsError(problems)


def _overflow(context: dict[str, Any] | None) -> str | None:
    """The float type a bound the field never declared comes from, if it is one."""
    bound = (context or {}).get("lt", (context or {}).get("gt"))
    return FLOAT_LIMITS.get(abs(bound)) if isinstance(bound, float) else None


def _describe(message: str, kind: str, field: str | None, context: Any = None) -> str:
    if kind == "missing":
        return "required field is missing" if field else "required value is missing"
    if kind == "extra_forbidden":
        return "unknown field (not in the model's input schema)"
    if kind in ("less_than", "greater_than") and (beyond := _overflow(context)):
        return f"is beyond {beyond}, the precision the model reads it at"
    if kind == "literal_error":
        return message.replace("Input should be", "must be one of", 1)
    return _SHOULD.sub("must ", message, count=1)
