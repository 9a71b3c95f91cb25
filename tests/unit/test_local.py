from __future__ import annotations

from fastinfer.model.spec import InputField
from fastinfer.repository.local import coerce_text


def test_csv_cells_become_schema_types() -> None:
    assert coerce_text("", InputField(name="a", type="number")) is None
    assert coerce_text("3", InputField(name="a", type="integer")) == 3
    assert coerce_text("3.0", InputField(name="a", type="integer")) == 3
    assert coerce_text("3.5", InputField(name="a", type="integer")) == "3.5"  # left for validation
    assert coerce_text("2.5", InputField(name="a", type="number")) == 2.5
    assert coerce_text("x", InputField(name="a", type="number")) == "x"
    assert coerce_text("true", InputField(name="a", type="boolean")) is True
    assert coerce_text("0", InputField(name="a", type="boolean")) is False
    assert coerce_text("007", InputField(name="a", type="string")) == "007"
    assert coerce_text("1", InputField(name="a", type="integer", allowed=[1, 2, 3])) == 1
    assert coerce_text("4", None) == 4 and coerce_text("4.5", None) == 4.5


def test_integers_are_parsed_exactly_not_through_a_float() -> None:
    """float("9007199254740993") is 9007199254740992.0: the server would see another number."""
    field = InputField(name="a", type="integer")
    assert coerce_text("9007199254740993", field) == 9007199254740993
    assert coerce_text("9007199254740993.0", field) == 9007199254740993
    assert coerce_text("-12", field) == -12
    assert coerce_text("1e3", field) == "1e3"  # not an integer literal: validation says so
    assert coerce_text("9007199254740993", None) == 9007199254740993


def test_the_usual_missing_markers_are_missing_outside_text_columns() -> None:
    number = InputField(name="a", type="number", nullable=True)
    for marker in ("NA", "NaN", "nan", "N/A", "null", "None", "<NA>", " NA "):
        assert coerce_text(marker, number) is None, marker
    assert coerce_text("NA", InputField(name="b", type="integer", nullable=True)) is None
    assert coerce_text("NA", InputField(name="c", type="string")) == "NA"  # Namibia


def test_sklearn_frames_are_typed_like_pandas_would_read_them() -> None:
    import pandas as pd

    from fastinfer.runtimes.sklearn import SklearnRuntime

    fields = [
        InputField(name="n", type="number", nullable=True),
        InputField(name="i", type="integer"),
        InputField(name="j", type="integer", nullable=True),
        InputField(name="k", type="integer", allowed=[1, 2, 3]),
        InputField(name="s", type="string", nullable=True),
        InputField(name="a", type="any", nullable=True),
    ]
    runtime = SklearnRuntime.__new__(SklearnRuntime)
    runtime.bind_schema(fields)
    columns = [f.name for f in fields]
    rows = [
        {"n": 1.5, "i": 1, "j": None, "k": 2, "s": "x", "a": 3},
        {"n": None, "i": 2, "j": 4, "k": 3, "s": None, "a": "b"},
    ]
    expected = pd.DataFrame.from_records(rows, columns=columns)
    got = runtime._frame(rows, columns)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    # the same dtypes by name: strings are pandas' `str` (in Python storage, the faster one)
    assert [str(t) for t in got.dtypes] == [str(t) for t in expected.dtypes]
    # A batch whose values are all missing keeps the numeric dtype (from_records would make it
    # object), so a row's features do not depend on which rows it was batched with.
    alone = runtime._frame(rows[1:], columns)
    assert str(alone["n"].dtype) == "float64" and str(alone["j"].dtype) == "float64"
    lone_missing = runtime._frame([{**rows[0], "n": None}], columns)
    assert str(lone_missing["n"].dtype) == "float64"
