from __future__ import annotations

import json

import numpy as np
import pytest

from fastinfer.model.schema import (
    InvalidRowsError,
    MalformedBodyError,
    RowSchema,
    TooManyRowsError,
    pascal_case,
)
from fastinfer.model.spec import InputField

FIELDS = [
    InputField(name="age", type="number", nullable=True, minimum=0, maximum=120),
    InputField(name="kind", type="string", allowed=["a", "b"]),
    InputField(name="count", type="integer"),
    InputField(name="flag", type="boolean", nullable=True),
    InputField(name="odd name (cm)", type="number", nullable=True),
    InputField(name="note", type="string", max_length=5, nullable=True),
]


@pytest.fixture
def schema() -> RowSchema:
    return RowSchema("my-model", FIELDS, allow_extra=False, max_rows=3, example=None)


def test_rows_are_completed_in_column_order(schema: RowSchema) -> None:
    rows = schema.parse_request(b'{"inputs": [{"kind": "a", "count": 2, "odd name (cm)": 1.5}]}')
    assert rows == [
        {"age": None, "kind": "a", "count": 2, "flag": None, "odd name (cm)": 1.5, "note": None}
    ]
    assert list(rows[0]) == schema.columns


@pytest.mark.parametrize(
    ("row", "field", "problem"),
    [
        ({"kind": "c", "count": 1}, "kind", "must be one of 'a' or 'b'"),
        ({"kind": "a", "count": 1.5}, "count", "must be a valid integer"),
        ({"kind": "a", "count": "1"}, "count", "must be a valid integer"),
        ({"kind": "a", "count": True}, "count", "must be a valid integer"),
        ({"kind": "a"}, "count", "required field is missing"),
        ({"kind": "a", "count": 1, "age": -1}, "age", "must be greater than or equal to 0"),
        ({"kind": "a", "count": 1, "age": "old"}, "age", "must be a valid number"),
        ({"kind": "a", "count": 1, "note": "toolong"}, "note", "must have at most 5 characters"),
        (
            {"kind": "a", "count": 1, "zzz": 1},
            "zzz",
            "unknown field (not in the model's input schema)",
        ),
        ({"kind": "a", "count": 1, "flag": "yes"}, "flag", "must be a valid boolean"),
    ],
)
def test_each_problem_names_row_and_field(
    schema: RowSchema, row: dict, field: str, problem: str
) -> None:
    with pytest.raises(InvalidRowsError) as caught:
        schema.validate_rows([{"kind": "b", "count": 0}, row])
    (found,) = caught.value.problems
    assert (found.row, found.field, found.problem) == (1, field, problem)


def test_row_offset_shifts_reported_rows(schema: RowSchema) -> None:
    with pytest.raises(InvalidRowsError) as caught:
        schema.validate_rows([{"kind": "x", "count": 0}], row_offset=100)
    assert caught.value.problems[0].row == 100


def test_malformed_and_too_many_rows(schema: RowSchema) -> None:
    with pytest.raises(MalformedBodyError):
        schema.parse_request(b'{"inputs": [}')
    with pytest.raises(TooManyRowsError) as caught:
        schema.parse_request(b'{"inputs": [1, 2, 3, 4]}')
    assert (caught.value.actual, caught.value.limit) == (4, 3)


def test_non_row_items_are_reported_by_row(schema: RowSchema) -> None:
    with pytest.raises(InvalidRowsError) as caught:
        schema.parse_request(b'{"inputs": [{"kind": "a", "count": 1}, 7]}')
    (problem,) = caught.value.problems
    assert problem.row == 1 and problem.field is None
    assert problem.problem == "must be an object"


def test_json_schema_uses_names_and_refs(schema: RowSchema) -> None:
    schemas = schema.json_schemas("#/components/schemas/{model}")
    assert set(schemas) == {"MyModelRow", "MyModelPredictRequest"}
    row = schemas["MyModelRow"]
    assert row["required"] == ["kind", "count"]
    assert "odd name (cm)" in row["properties"]
    assert schema.row_json_schema()["title"] == "MyModelRow"


def test_pascal_case() -> None:
    assert pascal_case("car_evaluation") == "CarEvaluation"
    assert pascal_case("my-model.v2") == "MyModelV2"


# --- one set of rules for both protocols: JSON types, not Python's equality -------------------

CHOICES = [
    InputField(name="level", type="integer", allowed=[1, 2, 3]),
    InputField(name="on", type="boolean", allowed=[True]),
    InputField(name="mixed", allowed=[1, "x", 2.5], nullable=True),
    InputField(name="id", type="integer", nullable=True),
    InputField(name="ids", type="integer", shape=[2], nullable=True),
]


@pytest.fixture
def choices() -> RowSchema:
    return RowSchema("choices", CHOICES, allow_extra=False, max_rows=3, example=None)


@pytest.mark.parametrize(
    ("row", "field", "problem"),
    [
        ({"level": True}, "level", "must be a valid integer"),  # was accepted as 1
        ({"level": 1.0}, "level", "must be a valid integer"),  # was accepted as 1
        ({"level": 3.0}, "level", "must be a valid integer"),
        ({"on": 1}, "on", "must be a valid boolean"),  # was accepted as true
        ({"mixed": True}, "mixed", "must be one of 1, 'x' or 2.5"),
        ({"mixed": "y"}, "mixed", "must be one of 1, 'x' or 2.5"),
        ({"id": 2**63}, "id", "must be less than or equal to 9223372036854775807"),
        ({"id": -(2**63) - 1}, "id", "must be greater than or equal to -9223372036854775808"),
        ({"id": 10**40}, "id", "must be less than or equal to 9223372036854775807"),
        ({"ids": [1, 2**64]}, "ids[1]", "must be less than or equal to 9223372036854775807"),
    ],
)
def test_values_of_the_wrong_json_type_or_beyond_int64_are_refused(
    choices: RowSchema, row: dict, field: str, problem: str
) -> None:
    """The same on the JSON bytes (v1) and on decoded rows (v2, files, hooks)."""
    good = {"level": 2, "on": True}
    for parse in (
        lambda rows: choices.parse_request(json.dumps({"inputs": rows}).encode()),
        choices.validate_rows,
    ):
        with pytest.raises(InvalidRowsError) as caught:
            parse([good, {**good, **row}])
        (found,) = caught.value.problems
        assert (found.row, found.field, found.problem) == (1, field, problem)


def test_allowed_values_and_the_int64_range_are_accepted(choices: RowSchema) -> None:
    row = {"level": 3, "on": True, "mixed": 2.5, "id": 2**63 - 1, "ids": [-(2**63), 0]}
    assert choices.parse_request(json.dumps({"inputs": [row]}).encode()) == [row]
    assert choices.validate_rows([{**row, "mixed": "x", "id": -(2**63)}])[0]["id"] == -(2**63)
    published = choices.row_json_schema()["properties"]
    assert published["level"] == {"enum": [1, 2, 3], "title": "Level", "type": "integer"}
    assert published["id"]["anyOf"][0] == {
        "type": "integer",
        "minimum": -(2**63),
        "maximum": 2**63 - 1,
    }


# --- the precision the model reads ---------------------------------------------------------------

NARROW = [
    InputField(name="f", type="number", nullable=True, minimum=-1e39),
    InputField(name="t", type="number", shape=[2]),
    InputField(name="h", type="number", nullable=True),
    InputField(name="i", type="integer", nullable=True),
    InputField(name="u", type="integer", nullable=True, minimum=-5),
]
NARROW_DTYPES = {
    "f": np.dtype(np.float32),
    "t": np.dtype(np.float32),
    "h": np.dtype(np.float16),
    "i": np.dtype(np.int32),
    "u": np.dtype(np.uint8),
}


F32 = "is beyond float32's range (±3.4028235e+38), the precision the model reads it at"


@pytest.mark.parametrize(
    ("row", "field", "problem"),
    [
        ({"f": 3.5e38}, "f", F32),
        ({"f": -3.5e38}, "f", F32),
        ({"t": [0, 1e39]}, "t[1]", F32),
        (
            {"h": 65520},
            "h",
            "is beyond float16's range (±65504), the precision the model reads it at",
        ),
        ({"i": 2**31}, "i", "must be less than or equal to 2147483647"),
        ({"u": -1}, "u", "must be greater than or equal to 0"),
        ({"u": 256}, "u", "must be less than or equal to 255"),
    ],
)
def test_values_the_models_dtype_cannot_hold_are_refused(
    row: dict, field: str, problem: str
) -> None:
    narrow = RowSchema(
        "n", NARROW, allow_extra=False, max_rows=3, example=None, dtypes=NARROW_DTYPES
    )
    for schema in (narrow, narrow.renamed("other")):
        with pytest.raises(InvalidRowsError) as caught:
            schema.validate_rows([{"t": [0, 0], **row}])
        (found,) = caught.value.problems
        assert (found.row, found.field, found.problem) == (0, field, problem)


def test_the_largest_values_the_dtype_holds_are_accepted() -> None:
    narrow = RowSchema(
        "n", NARROW, allow_extra=False, max_rows=3, example=None, dtypes=NARROW_DTYPES
    )
    row = {"f": -3.4028235e38, "t": [3.4028235e38, 0], "h": 65519.0, "i": -(2**31), "u": 255}
    assert narrow.validate_rows([row]) == [row]
    assert narrow.row_json_schema()["properties"]["u"]["anyOf"][0]["minimum"] == 0
