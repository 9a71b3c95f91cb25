"""Build a model directory from a trained artefact and, optionally, a sample of its data.

Writing `model.yaml` by hand means restating what the artefact and the data already know: the
feature names, their types, the categories, a valid example. `fastinfer init` reads them instead:
the artefact (loaded with its runtime) gives the feature names and whatever types it declares,
the sample refines them, and the result is loaded exactly as `fastinfer serve` would load it
before anything is put in place, so a directory it writes is one that serves.

How the pieces are decided:

- Runtime: from the artefact's extension unless given, and the content must be in a format that
  runtime reads; kind: unless given, the first of classifier, regressor, tensor that the
  artefact loads as. Both are decided as for a bare `fastinfer serve --model NAME=FILE`, by
  `fastinfer.runtimes.detect` (`detect_runtime`, `open_as`).
- Inputs: the artefact's fields (`Runtime.derived_inputs`, plus the categories of scikit-learn
  encoders that refuse unknown values), refined by the sample's columns; see `build_inputs` in
  `fastinfer.scaffold.fields`, which holds these rules. An ONNX model taking all its features as
  one [N,F] tensor gets them named by the sample's columns (`stacked_columns`, written as the
  runtime option `input_columns`).
- Example: the first sample row with no missing value (and only allowed values); the class it
  predicts becomes `expected_example_output` for classifiers. Regressors get none: the
  self-test compares exactly, and a float need not reproduce to the last bit on other hardware.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import TypeAdapter, ValidationError

from fastinfer.model.integrity import sha256_bytes
from fastinfer.model.spec import (
    CONFIG_FILENAME,
    RUNTIME_NAMES,
    ArtefactSpec,
    InputField,
    ModelConfig,
    OutputSpec,
    dump_config,
)
from fastinfer.monitoring.reference import (
    REFERENCE_FILENAME,
    reference_statistics,
    write_reference,
)
from fastinfer.repository.served import ServedModel
from fastinfer.runtimes.detect import KINDS, RUNTIME_BY_EXTENSION, runtime_for_extension
from fastinfer.scaffold.artefact import ArtefactFacts, open_artefact, read_artefact, trust_options
from fastinfer.scaffold.fields import ScaffoldError, python_value
from fastinfer.scaffold.install import (
    PREDICT_BATCH,
    check_destination,
    install,
    load_staged,
    predict,
    staging,
)

SAMPLE_SUFFIXES = (".csv", ".parquet", ".pq")

__all__ = [  # ScaffoldError is defined in scaffold_fields, whose rules raise it too
    "KINDS",
    "RUNTIME_BY_EXTENSION",
    "SAMPLE_SUFFIXES",
    "ScaffoldError",
    "ScaffoldResult",
    "example_row",
    "model_name_for",
    "open_artefact",
    "read_sample",
    "runtime_for",
    "scaffold",
]


@dataclass(frozen=True)
class ScaffoldResult:
    """What `scaffold` wrote, and what the user should know about it."""

    directory: Path
    config: ModelConfig
    sources: dict[str, str]  # input field → "artefact", "sample" or "artefact + sample"
    sample_rows: int | None  # None: no sample
    files: list[str]
    self_test: str
    warnings: list[str]


def runtime_for(path: Path) -> str:
    """The runtime an artefact's extension implies."""
    suffix = path.suffix.lower()
    runtime = runtime_for_extension(path)
    if runtime is None:
        raise ScaffoldError(
            f"{path.name}: cannot tell the runtime from the extension {suffix or '(none)'!r}; "
            f"pass --runtime (one of: {', '.join(r for r in RUNTIME_NAMES if r != 'python')})"
        )
    return runtime


def model_name_for(path: Path) -> str:
    """A valid model name from the artefact's file name: `My Model.joblib` → `my-model`."""
    stem = path.name.removesuffix(path.suffix) if path.suffix else path.name
    slug = re.sub(r"[^a-z0-9_.-]+", "-", stem.lower()).lstrip("_.-")[:63].rstrip("_.-")
    if not slug:
        raise ScaffoldError(f"cannot make a model name from {path.name!r}; pass --name")
    return slug


def read_sample(path: Path) -> pd.DataFrame:
    """A CSV or Parquet sample, with string column names."""
    suffix = path.suffix.lower()
    if not path.is_file():
        raise ScaffoldError(f"{path}: no such sample file")
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path)
        elif suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            raise ScaffoldError(
                f"{path.name}: a sample must be {', '.join(SAMPLE_SUFFIXES)} (got {suffix!r})"
            )
    except ImportError as exc:
        raise ScaffoldError(
            f"{path.name}: reading Parquet needs pyarrow ({exc}); install it with "
            "`pip install pyarrow`, or pass the sample as CSV"
        ) from None
    except (ValueError, OSError) as exc:
        raise ScaffoldError(f"{path}: cannot read the sample: {exc}") from None
    if frame.empty:
        raise ScaffoldError(f"{path}: the sample has no rows")
    frame.columns = pd.Index([str(c) for c in frame.columns])
    return frame


def example_row(sample: pd.DataFrame, fields: Sequence[InputField]) -> dict[str, Any] | None:
    """The first sample row with every field present and allowed, as plain JSON values."""
    if any(f.name not in sample.columns for f in fields):
        return None
    names = [f.name for f in fields]
    usable = sample[names].notna().all(axis=1)
    for field in fields:
        if field.allowed is not None:
            usable &= sample[field.name].isin(field.allowed)
    candidates = np.flatnonzero(usable.to_numpy())
    if candidates.size == 0:
        return None
    record = sample.iloc[int(candidates[0])]
    row = {f.name: _plain(record[f.name], f) for f in fields}
    if any(f.shape is not None and not isinstance(row[f.name], list) for f in fields):
        return None  # a tensor field the sample holds as text: no valid example
    return row


def scaffold(
    artefact: Path,
    *,
    sample: Path | None = None,
    name: str | None = None,
    version: str = "1",
    runtime: str | None = None,
    kind: str | None = None,
    target: str | None = None,
    output: Path | None = None,
    force: bool = False,
    trust_types: Sequence[str] = (),
) -> ScaffoldResult:
    """Write a model directory for `artefact`, load it as the server would, then put it in place.

    Nothing is left behind on failure: the directory is built beside its destination and only
    moved there once it has loaded and passed its self-test. `trust_types` are the types a skops
    file may hold beyond those skops trusts (written as the runtime option `trusted_types`).
    """
    if not artefact.is_file():
        raise ScaffoldError(f"{artefact}: no such artefact file")
    runtime_name = runtime or runtime_for(artefact)
    _check_runtime(runtime_name)
    if kind is not None and kind not in KINDS:
        raise ScaffoldError(f"--kind must be one of {', '.join(KINDS)} (got {kind!r})")
    options = trust_options(runtime_name, trust_types)
    name = name or model_name_for(artefact)
    _check_name_version(name, version)
    destination = output if output is not None else Path("models") / name / version
    check_destination(destination, force=force)
    frame = read_sample(sample) if sample is not None else None

    data = artefact.read_bytes()
    facts = read_artefact(artefact, data, runtime_name, kind, options, frame, target)
    example = example_row(frame, facts.fields) if frame is not None else None
    artefact_name = "model" + artefact.suffix.lower()
    try:
        config = ModelConfig(
            name=name,
            version=version,
            runtime=runtime_name,  # checked by _check_runtime
            runtime_options=facts.options,
            artefact=ArtefactSpec(path=artefact_name, sha256=sha256_bytes(data)),
            inputs=facts.fields,
            example=example,
            output=OutputSpec(kind=facts.kind),
        )
    except ValidationError as exc:
        raise ScaffoldError(f"the config init would write is not valid: {exc}") from None
    return _write(destination, artefact_name, data, config, frame, facts)


def _write(
    destination: Path,
    artefact_name: str,
    data: bytes,
    config: ModelConfig,
    frame: pd.DataFrame | None,
    facts: ArtefactFacts,
) -> ScaffoldResult:
    """Stage the files, load them as the server would (adding the example's expected output),
    write the reference statistics, and put the directory in place."""
    warnings = list(facts.warnings)
    with staging(destination) as staged:
        (staged / artefact_name).write_bytes(data)
        (staged / CONFIG_FILENAME).write_text(dump_config(config), encoding="utf-8")
        served = load_staged(staged)
        if config.example is not None and config.output.kind == "classifier":
            (prediction,) = predict(served, [config.example])
            config = ModelConfig.model_validate(
                {**config.model_dump(), "expected_example_output": prediction["label"]}
            )
            (staged / CONFIG_FILENAME).write_text(dump_config(config), encoding="utf-8")
            served = load_staged(staged)  # the pin, the config and the expected output, for real
        files = [artefact_name, CONFIG_FILENAME]
        if frame is not None:
            predictions, notes = _predict_sample(served, frame, facts.fields)
            warnings.extend(notes)
            write_reference(
                staged / REFERENCE_FILENAME, reference_statistics(frame, facts.fields, predictions)
            )
            files.append(REFERENCE_FILENAME)
        install(staged, destination)
    return ScaffoldResult(
        directory=destination,
        config=config,
        sources=facts.sources,
        sample_rows=len(frame) if frame is not None else None,
        files=files,
        self_test=served.self_test,
        warnings=warnings,
    )


# --- values ----------------------------------------------------------------------------------


def _plain(value: Any, field: InputField) -> Any:
    """A sample cell as the JSON value a client would send for `field` (None when missing)."""
    value = python_value(value)
    if isinstance(value, list):
        return value
    if value is None or pd.isna(value):
        return None
    if field.type == "integer" and isinstance(value, float) and value.is_integer():
        return int(value)
    if field.type == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _rows(sample: pd.DataFrame, fields: Sequence[InputField]) -> list[dict[str, Any]]:
    columns = {f.name: [_plain(v, f) for v in sample[f.name].tolist()] for f in fields}
    return [
        dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)
    ]


# --- predicting the sample ------------------------------------------------------------------


def _predict_or_none(model: ServedModel, rows: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    try:
        return predict(model, rows)
    except Exception:
        return None


def _predict_sample(
    model: ServedModel, frame: pd.DataFrame, fields: Sequence[InputField]
) -> tuple[list[Any] | None, list[str]]:
    """The label or value of each sample row (None where a row fails), in batches."""
    key = {"classifier": "label", "regressor": "value"}.get(model.config.output.kind)
    if key is None:
        return None, []
    if any(f.name not in frame.columns for f in fields):
        return None, ["the sample lacks tensor inputs: reference.json has no prediction"]
    rows = _rows(frame, fields)
    predicted: list[Any] = []
    failures: list[str] = []
    for start in range(0, len(rows), PREDICT_BATCH):
        batch = rows[start : start + PREDICT_BATCH]
        whole = _predict_or_none(model, batch)
        if whole is not None:
            predicted.extend(p[key] for p in whole)
            continue
        for offset, row in enumerate(batch):  # find the rows at fault
            try:
                predicted.append(predict(model, [row])[0][key])
            except Exception as exc:
                predicted.append(None)
                failures.append(f"row {start + offset}: {exc}")
    notes = []
    if failures:
        notes.append(
            f"{len(failures)} of {len(rows)} sample rows could not be predicted "
            f"(first: {failures[0]}); they count as missing predictions in {REFERENCE_FILENAME}"
        )
    return predicted, notes


# --- checks --------------------------------------------------------------------------------


def _check_runtime(name: str) -> None:
    if name == "python":
        raise ScaffoldError(
            "the python runtime serves code, not an artefact: write its model.yaml by hand"
        )
    if name not in RUNTIME_NAMES:
        choices = ", ".join(r for r in RUNTIME_NAMES if r != "python")
        raise ScaffoldError(f"unknown runtime {name!r}; use one of: {choices}")


def _check_name_version(name: str, version: str) -> None:
    """The config's own rules for names and versions, checked before any work is done."""
    for option, field_name, value in (("--name", "name", name), ("--version", "version", version)):
        field = ModelConfig.model_fields[field_name]
        try:
            TypeAdapter(Annotated[str, field]).validate_python(value)
        except ValidationError as exc:
            raise ScaffoldError(
                f"{option} {value!r} is not valid: {exc.errors()[0]['msg'].lower()}"
            ) from None
