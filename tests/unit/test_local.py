from __future__ import annotations

from fastinfer.local import coerce_text
from fastinfer.modelspec import InputField


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
