"""Scoring in-process, with the server's own loading and validation (no HTTP, no skew)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from fastinfer.model.schema import InvalidRowsError
from fastinfer.model.spec import InputField, ModelDirectory
from fastinfer.repository.registry import ModelRegistry
from fastinfer.repository.served import ServedModel
from fastinfer.runtimes import Prediction

_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


class ModelLoadError(RuntimeError):
    """The model could not be loaded or failed its self-test; `reason` says why."""

    def __init__(self, name: str, reason: str | None) -> None:
        super().__init__(f"model {name!r} did not load: {reason}")
        self.reason = reason


def load_local(directory: ModelDirectory, *, trust_unpinned: bool = False) -> ServedModel:
    """Load a model exactly as `fastinfer serve` does (pinned, self-tested); raise if not ready.

    `fastinfer score` scores with it, and `fastinfer init` checks the files it wrote with it.
    """
    registry = ModelRegistry([directory], max_rows=1_000_000, trust_unpinned=trust_unpinned)
    (model,) = registry
    registry.load(model)
    if not model.ready:
        raise ModelLoadError(model.name, model.reason)
    return model


def score_rows(model: ServedModel, rows: list[Any], *, row_offset: int = 0) -> list[dict[str, Any]]:
    """One record per row, `{"row", ...prediction}` or `{"row", "error"}`; bad rows stay local."""
    assert model.schema is not None and model.runtime is not None
    schema, runtime = model.schema, model.runtime
    try:
        valid = schema.validate_rows(rows, row_offset=row_offset)
    except InvalidRowsError:
        return [_score_one(model, row, row_offset + i) for i, row in enumerate(rows)]
    predictions = runtime.predict(valid, schema.columns)
    return [{"row": row_offset + i, **p} for i, p in enumerate(predictions)]


def _score_one(model: ServedModel, row: Any, index: int) -> dict[str, Any]:
    assert model.schema is not None and model.runtime is not None
    try:
        valid = model.schema.validate_rows([row], row_offset=index)
    except InvalidRowsError as exc:
        return {"row": index, "error": [p.as_dict() for p in exc.problems]}
    prediction: Prediction = model.runtime.predict(valid, model.schema.columns)[0]
    return {"row": index, **prediction}


def coerce_text(value: str, field: InputField | None) -> Any:
    """A CSV cell → the JSON value the schema expects; empty means missing.

    Cells that do not convert are passed through, so validation names the field and problem.
    """
    if value == "":
        return None
    kind = field.type if field is not None else "any"
    allowed = field.allowed if field is not None else None
    if allowed is not None and any(isinstance(a, int | float) for a in allowed):
        kind = "number" if any(isinstance(a, float) for a in allowed) else "integer"
    try:
        if kind == "integer":
            number = float(value)
            return int(number) if number.is_integer() else value
        if kind == "number":
            return float(value)
        if kind == "boolean":
            lowered = value.strip().lower()
            return True if lowered in _TRUE else False if lowered in _FALSE else value
        if kind == "any":
            number = float(value)
            return int(number) if number.is_integer() and "." not in value else number
    except ValueError:
        return value
    return value


def read_rows(path: Path, fields: list[InputField]) -> Iterator[Any]:
    """Rows from a CSV, JSON (a list, or `{"inputs": [...]}`) or JSON Lines file."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        by_name = {f.name: f for f in fields}
        with path.open(newline="", encoding="utf-8") as handle:
            for record in csv.DictReader(handle):
                yield {
                    key: coerce_text(value or "", by_name.get(key))
                    for key, value in record.items()
                    if key is not None and (key in by_name or not by_name)
                }
    elif suffix in {".jsonl", ".ndjson"}:
        with path.open("rb") as handle:
            for line in handle:
                if line.strip():
                    yield orjson.loads(line)
    else:
        data = orjson.loads(path.read_bytes())
        if isinstance(data, dict) and "inputs" in data:
            data = data["inputs"]
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON list of rows or {{'inputs': [...]}}")
        yield from data


def write_records(records: list[dict[str, Any]], fmt: str, handle: io.TextIOBase) -> None:
    """Write scored records as JSON Lines, a JSON list, or CSV (one column per class)."""
    if fmt == "jsonl":
        for record in records:
            handle.write(orjson.dumps(record).decode() + "\n")
    elif fmt == "json":
        handle.write(orjson.dumps(records, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        flat = [_flatten(r) for r in records]
        columns: list[str] = []
        for record in flat:
            columns.extend(k for k in record if k not in columns)
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(flat)


def _flatten(record: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if key == "probabilities" and isinstance(value, dict):
            flat.update({f"p_{label}": p for label, p in value.items()})
        elif key == "error":
            flat["error"] = "; ".join(f"{e['field']}: {e['problem']}" for e in value)
        else:
            flat[key] = value
    return flat
