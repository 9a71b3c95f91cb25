"""Scoring in-process, with the server's own loading and validation (no HTTP, no skew)."""

from __future__ import annotations

import csv
import io
import re
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


# Cells that mean "missing" in a non-text column, as pandas and spreadsheets write them. In a
# text column only the empty cell is missing ("NA" may be a value there: Namibia's country code).
MISSING_MARKERS = frozenset(
    {"", "NA", "N/A", "n/a", "NaN", "nan", "-NaN", "-nan", "NULL", "null", "None", "<NA>", "#N/A"}
)
_INTEGER = re.compile(r"[+-]?[0-9]+")
_WHOLE_DECIMAL = re.compile(r"([+-]?[0-9]+)\.0*")  # 10.0, as CSV writers print whole floats


class UnknownColumnsError(ValueError):
    """The CSV has columns the model's schema does not know (the server would refuse them)."""


def coerce_text(value: str, field: InputField | None) -> Any:
    """A CSV cell → the JSON value the schema expects, exactly as a JSON client would send it.

    Integers are parsed as integers (never through a float, which loses digits past 2**53);
    the usual missing markers are missing in non-text columns. Cells that do not convert are
    passed through, so validation names the field and problem.
    """
    kind = field.type if field is not None else "any"
    if value == "" or (kind != "string" and value.strip() in MISSING_MARKERS):
        return None
    allowed = field.allowed if field is not None else None
    if allowed is not None and any(isinstance(a, int | float) for a in allowed):
        kind = "number" if any(isinstance(a, float) for a in allowed) else "integer"
    text = value.strip()
    if kind == "integer":
        whole = _INTEGER.fullmatch(text) or _WHOLE_DECIMAL.fullmatch(text)
        return int(whole.group(1) if whole.re is _WHOLE_DECIMAL else text) if whole else value
    if kind == "boolean":
        lowered = text.lower()
        return True if lowered in _TRUE else False if lowered in _FALSE else value
    if kind in ("number", "any"):
        if kind == "any" and _INTEGER.fullmatch(text):
            return int(text)
        try:
            return float(text)
        except ValueError:
            return value
    return value


def read_rows(
    path: Path, fields: list[InputField], *, allow_extra: bool = False, ignore_extra: bool = False
) -> Iterator[Any]:
    """Rows from a CSV, JSON (a list, or `{"inputs": [...]}`) or JSON Lines file.

    A CSV column the schema does not know is refused (UnknownColumnsError), as the server
    refuses an unknown field, unless the schema allows extra fields or `ignore_extra` says to
    drop such columns."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        yield from _csv_rows(path, fields, allow_extra=allow_extra, ignore_extra=ignore_extra)
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


def _csv_rows(
    path: Path, fields: list[InputField], *, allow_extra: bool, ignore_extra: bool
) -> Iterator[dict[str, Any]]:
    by_name = {f.name: f for f in fields}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        unknown = [name for name in header if name not in by_name]
        if unknown and by_name and not (allow_extra or ignore_extra):
            raise UnknownColumnsError(_unknown_columns(unknown, list(by_name)))
        keep = set(header) if not by_name else set(header) & set(by_name)
        for record in reader:
            yield {
                key: coerce_text(value or "", by_name.get(key))
                for key, value in record.items()
                if key is not None and key in keep
            }


def _unknown_columns(unknown: list[str], known: list[str]) -> str:
    by_lower = {name.lower(): name for name in known}
    hints = [
        f"{name!r} (did you mean {by_lower[name.lower()]!r}?)"
        if name.lower() in by_lower
        else repr(name)
        for name in unknown
    ]
    return (
        f"the model has no input named {', '.join(hints)}; its inputs are "
        f"{', '.join(known)} (use --ignore-extra to drop the other columns)"
    )


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
