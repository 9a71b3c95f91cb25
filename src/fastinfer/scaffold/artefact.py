"""What `fastinfer init` reads from the artefact: its format, its kind, its runtime options and
its input fields (refined by the sample).

The format and the kind are decided by `fastinfer.runtimes.detect`, exactly as for a bare
`fastinfer serve --model NAME=FILE`; this module turns what goes wrong there into messages about
init's own options (--kind, --runtime, --trust-type) and adds what only a sample can tell: the
names of an ONNX model's stacked features (`stacked_columns`) and the sample's own spelling of
LightGBM feature names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from fastinfer.model.spec import InputField
from fastinfer.runtimes import Runtime, RuntimeUnavailable
from fastinfer.runtimes.detect import (
    HEAD_BYTES,
    ArtefactFormatError,
    KindError,
    UntrustedTypesError,
    detect_runtime,
    open_as,
)
from fastinfer.scaffold.fields import (
    ScaffoldError,
    build_inputs,
    derived_inputs,
    is_positional,
    stacked_columns,
)

__all__ = ["ArtefactFacts", "open_artefact", "read_artefact", "trust_options"]


@dataclass(frozen=True)
class ArtefactFacts:
    """What the artefact (and the sample) say: the kind, the runtime options, the fields."""

    kind: str
    options: dict[str, Any]
    fields: list[InputField]
    sources: dict[str, str]
    warnings: list[str]


def read_artefact(
    artefact: Path,
    data: bytes,
    runtime_name: str,
    kind: str | None,
    options: dict[str, Any],
    frame: pd.DataFrame | None,
    target: str | None,
) -> ArtefactFacts:
    """Check the content, open the artefact (deciding its kind) and derive its input fields,
    refined by the sample."""
    try:
        detect_runtime(artefact, data[:HEAD_BYTES], runtime_name)
    except ArtefactFormatError as exc:
        raise ScaffoldError(str(exc)) from None
    chosen, loaded = open_artefact(runtime_name, data, kind, source=artefact, options=options)
    derived = derived_inputs(loaded)
    stacked, warnings = (
        (None, []) if runtime_name != "onnx" else stacked_columns(derived, frame, target)
    )
    if stacked is not None:  # reopen with the features named: derived fields are the columns
        options = {**options, "input_columns": stacked}
        chosen, loaded = open_artefact(runtime_name, data, chosen, source=artefact, options=options)
        derived = derived_inputs(loaded)
    fields, sources, notes = build_inputs(
        derived,
        frame,
        target=target,
        positional=is_positional(loaded),
        feature_name=getattr(loaded, "feature_name_of", None),
    )
    return ArtefactFacts(chosen, options, fields, sources, warnings + notes)


def open_artefact(
    runtime_name: str,
    data: bytes,
    kind: str | None,
    *,
    source: Path,
    options: dict[str, Any] | None = None,
) -> tuple[str, Runtime]:
    """Load and start the artefact as `kind`, or as the first kind that fits (`open_as`)."""
    if kind == "regressor":
        _refuse_classifier_as_regressor(runtime_name, data, options, source)
    try:
        return open_as(runtime_name, data, kind, options=options)
    except KindError as exc:
        if kind is not None:
            raise ScaffoldError(f"{source.name}: cannot load it {exc.problems[0]}") from None
        raise ScaffoldError(f"{source.name}: {exc} (pass --kind, or check --runtime)") from None
    except UntrustedTypesError as exc:
        flags = " ".join(f"--trust-type {t}" for t in exc.types)
        raise ScaffoldError(
            f"{source.name}: the skops file holds type(s) that skops does not trust by default: "
            f"{', '.join(exc.types)}. Building them can run their code; if you trust them, pass "
            f"{flags}"
        ) from None
    except RuntimeUnavailable as exc:
        raise ScaffoldError(str(exc)) from None
    except ModuleNotFoundError as exc:
        if (exc.name or "").startswith("fastinfer.runtimes"):
            raise ScaffoldError(
                f"runtime {runtime_name!r} is not available in this fastinfer installation "
                f"(no module {exc.name})"
            ) from None
        raise ScaffoldError(f"{source.name}: cannot load it: {exc}") from None
    except Exception as exc:
        raise ScaffoldError(
            f"{source.name}: the {runtime_name} runtime cannot load it: {type(exc).__name__}: {exc}"
        ) from None


def _refuse_classifier_as_regressor(
    runtime_name: str, data: bytes, options: dict[str, Any] | None, source: Path
) -> None:
    """`--kind regressor` on a classifier loads (its predict gives labels) but serves them as
    numbers, without the probabilities: a mistake to stop at init, not to find in production."""
    try:
        detected, runtime = open_as(runtime_name, data, None, options=options)
    except Exception:  # it loads only as asked (or not at all: said below): nothing to compare
        return
    if detected == "classifier":
        labels = runtime.output_labels() or []
        shown = ", ".join(map(str, labels[:5])) + (", ..." if len(labels) > 5 else "")
        raise ScaffoldError(
            f"{source.name} is a classifier (labels: {shown}): as a regressor it would serve its "
            "predicted labels as numbers and drop the probabilities. Leave --kind out (it is "
            "detected), or pass --kind tensor for the raw outputs"
        )


def trust_options(runtime_name: str, trust_types: Sequence[str]) -> dict[str, Any]:
    if not trust_types:
        return {}
    if runtime_name != "sklearn":
        raise ScaffoldError(
            f"--trust-type applies to skops files (runtime sklearn), not runtime {runtime_name}"
        )
    return {"trusted_types": list(dict.fromkeys(trust_types))}
