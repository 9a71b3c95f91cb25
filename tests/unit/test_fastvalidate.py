"""The numeric fast path accepts exactly what the strict validator accepts, and no more."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from fastinfer.model.fastvalidate import eligible
from fastinfer.model.schema import InvalidRowsError, MalformedBodyError, RowSchema, TooManyRowsError
from fastinfer.model.spec import InputField

FIELDS = [
    InputField(name="x", type="number", shape=[3]),
    InputField(name="s", type="number"),
]


def schema() -> RowSchema:
    return RowSchema("m", FIELDS, allow_extra=False, max_rows=4, example=None)


def strict(body: bytes) -> object:
    fast = schema()
    fast._numeric = None  # the pydantic path alone
    try:
        return fast.parse_request(body)
    except (InvalidRowsError, MalformedBodyError, TooManyRowsError) as exc:
        return (type(exc).__name__, str(exc))


def fast(body: bytes) -> object:
    try:
        rows = schema().parse_request(body)
    except (InvalidRowsError, MalformedBodyError, TooManyRowsError) as exc:
        return (type(exc).__name__, str(exc))
    return [{k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in r.items()} for r in rows]


def test_eligibility() -> None:
    assert eligible(FIELDS)
    assert not eligible([InputField(name="a", type="number", nullable=True)])
    assert not eligible([InputField(name="a", type="integer")])
    assert not eligible([InputField(name="a", type="number", minimum=0)])
    assert not eligible([InputField(name="a", type="string")])


def test_valid_rows_are_the_same_values() -> None:
    body = orjson.dumps({"inputs": [{"x": [1, 2.5, -3e-3], "s": 4}, {"s": 0.5, "x": [0, 0, 1]}]})
    assert fast(body) == strict(body)
    rows = schema().parse_request(body)
    assert rows[0]["x"].dtype.name == "float64" and rows[0]["s"] == 4.0


@pytest.mark.parametrize(
    "payload",
    [
        {"inputs": [{"x": [1, 2, True], "s": 1}]},
        {"inputs": [{"x": [1, 2, "3"], "s": 1}]},
        {"inputs": [{"x": [1, 2], "s": 1}]},
        {"inputs": [{"x": [1, 2, 3, 4], "s": 1}]},
        {"inputs": [{"x": [1, 2, 3]}]},
        {"inputs": [{"x": [1, 2, 3], "s": 1, "extra": 1}]},
        {"inputs": [{"x": [1, 2, 3], "s": None}]},
        {"inputs": [{"x": [[1], 2, 3], "s": 1}]},
        {"inputs": [{"x": [1, 2, 3], "s": 1}] * 5},
        {"inputs": []},
        {"inputs": [{"x": [1, 2, 3], "s": 1}], "more": 1},
        {"inputs": [7]},
        [1, 2],
    ],
)
def test_invalid_rows_get_the_strict_answer(payload: object) -> None:
    body = (
        orjson.dumps(payload)
        if not isinstance(payload, dict) or "1e400" not in str(payload)
        else b'{"inputs": [{"x": [1, 2, 1e400], "s": 1}]}'
    )
    assert fast(body) == strict(body)
    assert isinstance(fast(body), tuple)


def test_overflowing_numbers_take_the_strict_path() -> None:
    body = b'{"inputs": [{"x": [1, 2, 1e400], "s": 1}]}'
    assert fast(body) == strict(body)


def test_malformed_json_takes_the_strict_path() -> None:
    assert fast(b'{"inputs": [') == strict(b'{"inputs": [')
    assert fast(b'{"inputs": [{"x": [1, 2, NaN], "s": 1}]}') == strict(
        b'{"inputs": [{"x": [1, 2, NaN], "s": 1}]}'
    )


@pytest.mark.parametrize(
    ("x", "s", "accepted"),
    [
        ([1, 2, 3.4028235e38], -3.4028235e38, True),  # float32's largest, as clients print it
        ([1, 2, 3.5e38], 1, False),  # would be inf in float32
        ([1, 2, 3], -1e39, False),
        ([1, 2, 3], 1e300, False),
    ],
)
def test_float32_fields_take_the_fast_path_only_within_float32(
    x: list[float], s: float, accepted: bool
) -> None:
    """A field the model reads as float32: the fast path refuses what float32 cannot hold, and
    the strict validator explains (the same answer both ways)."""
    float32 = np.dtype(np.float32)
    narrow = RowSchema(
        "m",
        FIELDS,
        allow_extra=False,
        max_rows=4,
        example=None,
        dtypes={"x": float32, "s": float32},
    )
    numeric = narrow._numeric
    assert numeric is not None
    body = orjson.dumps({"inputs": [{"x": [0, 0, 0], "s": 0}, {"x": x, "s": s}]})
    assert (numeric.parse(body) is not None) is accepted
    if not accepted:
        with pytest.raises(InvalidRowsError) as caught:
            narrow.parse_request(body)
        (problem,) = caught.value.problems
        assert problem.row == 1 and problem.field in ("x[2]", "s")
        assert problem.problem.startswith("is beyond float32's range (±3.4028235e+38)")
