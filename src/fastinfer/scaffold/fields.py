"""What a model's input fields are, as far as its artefact and a sample of its data can tell.

`fastinfer init` (`scaffold.build`) writes files and runs the flow; the decisions about each
input field live here, apart from it, because they are rules about data rather than steps: the
same artefact and sample always give the same fields, and each rule can be read (and tested) on
its own, without a model directory being written.

- From the artefact: `derived_inputs` takes the fields its runtime declares
  (`Runtime.derived_inputs`) and adds the categories of scikit-learn encoders that refuse
  unknown values; `is_positional` tells a model fit on unnamed columns.
- From the sample: `infer_field` reads one column's type, nullability and categories.
- Both together: `build_inputs` refines each artefact field by its column, keeping what the
  artefact knew where the sample agrees.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from fastinfer.model.spec import FieldType, InputField
from fastinfer.runtimes import Runtime

MAX_CATEGORIES = 50  # a string column with at most this many distinct values is categorical
_SHOWN_VALUES = 5


class ScaffoldError(RuntimeError):
    """Why a model directory could not be built; the message says what to do about it.

    Defined here, where the field rules raise it, and re-exported by `fastinfer.scaffold.build`.
    """


def infer_field(name: str, series: pd.Series[Any]) -> InputField:
    """What one sample column says about its field: type, nullability, categories."""
    field_type = _sample_type(name, series)
    present = series.dropna()
    allowed: list[str | int | float | bool] | None = None
    if field_type == "string":
        distinct = sorted({str(v) for v in present.tolist()})
        # Every value different: an identifier or free text, not a category.
        if 0 < len(distinct) <= MAX_CATEGORIES and len(distinct) < len(present):
            allowed = list(distinct)
    return InputField(
        name=name, type=field_type, nullable=bool(series.isna().any()), allowed=allowed
    )


def build_inputs(
    derived: Sequence[InputField] | None,
    sample: pd.DataFrame | None,
    *,
    target: str | None = None,
    positional: bool = False,
    feature_name: Callable[[str], str] | None = None,
) -> tuple[list[InputField], dict[str, str], list[str]]:
    """The input fields, where each came from, and warnings.

    With no sample, the artefact's fields as they are. With one, each artefact field is refined
    by its column (`infer_field`), keeping what the artefact knew where the sample agrees; with
    no names from the artefact, the sample's columns (less `target`) are the inputs. A model fit
    on unnamed columns (`positional`) takes the sample's columns in order. A field the sample
    names as it was before the framework rewrote it (`feature_name`: LightGBM's "a b" → "a_b")
    takes the sample's name.
    """
    if sample is None:
        if not derived:
            raise ScaffoldError(
                "the artefact names no inputs; pass --sample with rows of the data (CSV or "
                "Parquet) so that init can read the columns"
            )
        return list(derived), {f.name: "artefact" for f in derived}, []
    warnings: list[str] = []
    columns = [c for c in sample.columns if c != target]
    if target is not None and target not in sample.columns:
        warnings.append(f"--target {target!r} is not a column of the sample")
    if derived and target is not None and any(f.name == target for f in derived):
        raise ScaffoldError(f"--target {target!r} is one of the model's own inputs")
    known = list(derived or [])
    if known and positional and not any(f.name in sample.columns for f in known):
        known = _named_in_order(known, columns, target)
        warnings.append(
            "the artefact does not name its features: the sample's columns are taken in order"
        )
    if not known:
        known = [InputField(name=c) for c in columns]
    if feature_name is not None:
        known = _as_sample_names(known, columns, feature_name)
    missing = [f.name for f in known if f.shape is None and f.name not in sample.columns]
    if missing:
        raise ScaffoldError(
            f"the model needs column(s) the sample lacks: {', '.join(missing)} "
            f"(sample columns: {', '.join(sample.columns)})"
        )
    names = {f.name for f in known}
    unused = [c for c in columns if c not in names]
    if unused:
        warnings.append(f"sample columns the model does not use: {', '.join(unused)}")
    fields, sources, notes = _refined(known, sample)
    return fields, sources, warnings + notes


def _named_in_order(
    known: list[InputField], columns: list[str], target: str | None
) -> list[InputField]:
    """Unnamed features (x0, x1, ...) named after the sample's columns, in order."""
    if len(columns) != len(known):
        besides = " besides --target" if target else ""
        raise ScaffoldError(
            f"the model takes {len(known)} unnamed features but the sample has "
            f"{len(columns)} columns{besides}"
        )
    return [_renamed(f, c) for f, c in zip(known, columns, strict=True)]


def _as_sample_names(
    known: list[InputField], columns: list[str], feature_name: Callable[[str], str]
) -> list[InputField]:
    """Fields absent from the sample, named as the one column the framework would rename so."""
    present = set(columns)
    named = []
    for field in known:
        matches = [c for c in columns if feature_name(c) == field.name]
        if field.name not in present and field.shape is None and len(matches) == 1:
            named.append(_renamed(field, matches[0]))
        else:
            named.append(field)
    return named


def stacked_columns(
    derived: Sequence[InputField] | None, sample: pd.DataFrame | None, target: str | None
) -> tuple[dict[str, list[str]] | None, list[str]]:
    """The sample's columns, by name, for a model taking all its features as one tensor.

    A tabular model converted to ONNX (skl2onnx) has a single [N,F] input and no feature names;
    a sample with F columns (besides --target) names them, in order. Returns the input → its
    columns (the onnx runtime option `input_columns`), or None, and warnings.
    """
    if sample is None or not derived or len(derived) != 1:
        return None, []
    (field,) = derived
    if field.shape is None or len(field.shape) != 1 or field.name in sample.columns:
        return None, []
    columns = [c for c in sample.columns if c != target]
    if len(columns) != field.shape[0]:
        besides = " besides --target" if target else " (is one of them the label? pass --target)"
        return None, [
            f"input {field.name!r} takes {field.shape[0]} features but the sample has "
            f"{len(columns)} columns{besides}: they are not mapped to it, so there is no "
            "example, no self-test and no feature statistics"
        ]
    return {field.name: columns}, [
        f"the model takes its {len(columns)} features as one tensor, {field.name!r}: the "
        "sample's columns name them, in order"
    ]


def _refined(
    known: list[InputField], sample: pd.DataFrame
) -> tuple[list[InputField], dict[str, str], list[str]]:
    """Each field refined by its sample column (tensor fields stay as the artefact says)."""
    fields: list[InputField] = []
    sources: dict[str, str] = {}
    warnings: list[str] = []
    for field in known:
        if field.shape is not None:
            fields.append(field)
            sources[field.name] = "artefact"
            continue
        series = sample[field.name]
        merged, notes = _merge_field(field, infer_field(field.name, series), series)
        fields.append(merged)
        warnings.extend(notes)
        sources[field.name] = "sample" if _bare(field) else "artefact + sample"
    return fields, sources, warnings


def derived_inputs(runtime: Runtime) -> list[InputField] | None:
    """The artefact's own fields, with categories from encoders that refuse unknown values."""
    try:
        derived = runtime.derived_inputs()
    except (TypeError, ValueError) as exc:
        raise ScaffoldError(f"cannot read the inputs from the artefact: {exc}") from None
    if not derived:
        return derived
    encoders = _encoder_fields(runtime)
    return [
        _with_categories(f, encoders[f.name]) if f.name in encoders and f.shape is None else f
        for f in derived
    ]


def is_positional(runtime: Runtime) -> bool:
    """A scikit-learn model fit on an array: it takes columns by position, not by name."""
    estimator = getattr(runtime, "estimator", None)
    return estimator is not None and not hasattr(estimator, "feature_names_in_")


# --- the sample ------------------------------------------------------------------------------


def _sample_type(name: str, series: pd.Series[Any]) -> FieldType:
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if isinstance(dtype, pd.CategoricalDtype):
        return _values_type(series.dropna().tolist())
    if pd.api.types.is_integer_dtype(dtype):
        return "integer"
    if pd.api.types.is_float_dtype(dtype):
        return "number"  # integer-valued floats too: a float column means NaN, or real numbers
    if pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
        return _values_type(series.dropna().tolist())
    raise ScaffoldError(
        f"sample column {name!r} has dtype {dtype}, which a JSON row cannot carry; convert it "
        "(e.g. to text or numbers) or leave it out of the sample"
    )


def _values_type(values: list[Any]) -> FieldType:
    """The field type of a column of Python values (object or categorical columns)."""
    if not values:
        return "any"
    if all(isinstance(v, bool | np.bool_) for v in values):
        return "boolean"
    if all(isinstance(v, str) for v in values):
        return "string"
    if any(isinstance(v, bool | np.bool_) for v in values):
        return "any"
    if all(isinstance(v, int | np.integer) for v in values):
        return "integer"
    if all(isinstance(v, int | float | np.integer | np.floating) for v in values):
        return "number"
    return "any"


def _merge_field(
    known: InputField, seen: InputField, series: pd.Series[Any]
) -> tuple[InputField, list[str]]:
    """The artefact's field refined by what the sample shows; the artefact wins where both know."""
    notes: list[str] = []
    field_type = _merged_type(known, seen, series)
    allowed = known.allowed
    if allowed is not None:
        present = {python_value(v) for v in series.dropna().tolist()}
        unknown = sorted((str(v) for v in present - set(allowed)), key=str)
        if unknown:
            shown = ", ".join(unknown[:_SHOWN_VALUES]) + (" ..." if len(unknown) > 5 else "")
            notes.append(
                f"column {known.name!r}: the sample holds values the model does not know "
                f"({shown}); requests with them will be refused"
            )
    elif field_type == "string":
        allowed = seen.allowed
    data = known.model_dump()
    # The sample says whether values go missing; the artefact only says whether it could cope.
    nullable = seen.nullable or (known.nullable and known.allowed is not None)
    data.update(type=field_type, nullable=nullable, allowed=allowed)
    return InputField.model_validate(data), notes


def _merged_type(known: InputField, seen: InputField, series: pd.Series[Any]) -> FieldType:
    model, sample = known.type, seen.type
    if model == "any":
        return sample
    if sample in ("any", model):
        return model
    if model == "number" and sample == "integer":
        return "integer"  # whole numbers in the data: the narrower type documents it better
    if model in ("number", "integer") and sample == "boolean":
        return "boolean"  # a 0/1 flag: numeric to the model, true/false to its clients
    if model == "integer" and sample == "number" and _integral(series):
        return "integer"
    raise ScaffoldError(
        f"column {known.name!r}: the model takes {model} values but the sample holds {sample} "
        "values; check that the sample is data for this model"
    )


def _integral(series: pd.Series[Any]) -> bool:
    values = pd.to_numeric(series.dropna(), errors="coerce")
    return bool(values.notna().all() and (values % 1 == 0).all())


def _bare(field: InputField) -> bool:
    """Only a name: the artefact knew nothing else about this field."""
    return field == InputField(name=field.name)


def _renamed(field: InputField, name: str) -> InputField:
    return InputField.model_validate({**field.model_dump(), "name": name})


# --- the artefact ----------------------------------------------------------------------------


def _encoder_fields(runtime: Runtime) -> dict[str, InputField]:
    """Column → its field as a scikit-learn encoder that refuses unknown values reads it.

    Such an encoder fails on any other value, so its categories are the field's true `allowed`
    list, including those the sample happens not to hold.
    """
    estimator = getattr(runtime, "estimator", None)
    if estimator is None:
        return {}
    # only the sklearn runtime has encoders
    from fastinfer.runtimes.sklearn_schema import refusing_encoder_fields

    return refusing_encoder_fields(estimator)


def _with_categories(field: InputField, encoder: InputField) -> InputField:
    """The artefact's field narrowed to the categories of an encoder that refuses others."""
    if encoder.type in ("any", "boolean") or field.type not in ("any", encoder.type):
        return field
    assert encoder.allowed is not None  # a typed encoder field has its categories
    data = field.model_dump()
    data.update(
        type=encoder.type,
        allowed=sorted(encoder.allowed),
        nullable=field.nullable or encoder.nullable,  # NaN was a category: missing is fine
    )
    return InputField.model_validate(data)


# --- values ----------------------------------------------------------------------------------


def python_value(value: Any) -> Any:
    """A NumPy scalar or array as the plain Python value (or list) it holds."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
