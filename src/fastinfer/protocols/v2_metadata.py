"""Open Inference Protocol (v2) metadata: what the server and each model say about themselves.

Shapes use -1 for the row dimension; datatypes are the ones `v2` decodes each field from.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastinfer.model.spec import InputField
from fastinfer.protocols.v2_tensors import FIELD_DATATYPES

PLATFORMS = {
    "sklearn": "sklearn",
    "onnx": "onnxruntime_onnx",
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
    "python": "python",
    "torchscript": "pytorch_libtorch",
}


def platform_of(runtime: str) -> str:
    """The v2 `platform` of a fastinfer runtime (Triton's names where it has one)."""
    return PLATFORMS.get(runtime, runtime)


EXTENSIONS = ("binary_tensor_data", "model_repository")
# The name advertised for the one [N, F] tensor of an all-numeric model (any name that is not an
# input's is taken as it: clients send `input-0`, `input__0`, `float_input`, ...).
BATCHED_NAMES = ("input", "inputs", "input-0")


def batched_input(fields: list[InputField]) -> dict[str, Any] | None:
    """The [N, F] tensor a model whose inputs are all numeric scalars also takes, as metadata
    describes it (columns: the inputs, in order); None for any other model."""
    if not fields or not all(f.type in ("number", "integer") and f.shape is None for f in fields):
        return None
    taken = {f.name for f in fields}
    name = next((n for n in BATCHED_NAMES if n not in taken), "input-0")
    return {
        "name": name,
        "datatype": "FP64",
        "shape": [-1, len(fields)],
        "columns": [f.name for f in fields],
    }


def model_metadata(
    name: str,
    versions: list[str],
    platform: str,
    fields: list[InputField],
    kind: str,
    labels: list[str] | None,
    output_schemas: Mapping[str, Mapping[str, Any]] | None,
) -> dict[str, Any]:
    """The v2 model metadata: one input per field, outputs as `predictions_to_outputs` makes them.

    Shapes use -1 for the row dimension. A field's datatype is the one it is best sent as
    (integer INT64, number FP64, string BYTES, boolean BOOL); integer datatypes also fit number
    fields, and a field of type `any` (advertised as BYTES) accepts every datatype. Scalar
    columns also accept [N, 1]. A model whose inputs are all numeric scalars also takes one
    [N, F] tensor: `parameters.batched_input` says so (outside `inputs`, which clients send
    every one of).
    """
    inputs = [
        {"name": f.name, "datatype": FIELD_DATATYPES[f.type], "shape": [-1, *(f.shape or [])]}
        for f in fields
    ]
    outputs: list[dict[str, Any]]
    if kind == "classifier":
        width = len(labels) if labels else -1
        outputs = [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP64", "shape": [-1, width]},
        ]
    elif kind == "regressor":
        outputs = [{"name": "value", "datatype": "FP64", "shape": [-1]}]
    else:
        outputs = []
        for output_name, schema in (output_schemas or {}).items():
            described = _schema_tensor(schema)
            if described is not None:
                datatype, shape = described
                outputs.append({"name": output_name, "datatype": datatype, "shape": shape})
    metadata: dict[str, Any] = {
        "name": name,
        "versions": versions,
        "platform": platform,
        "inputs": inputs,
        "outputs": outputs,
    }
    batched = batched_input(fields)
    if batched is not None:
        metadata["parameters"] = {"batched_input": batched}
    return metadata


_SCHEMA_DATATYPES = {"number": "FP64", "integer": "INT64", "boolean": "BOOL", "string": "BYTES"}


def _schema_tensor(schema: Mapping[str, Any]) -> tuple[str, list[int]] | None:
    """A per-row JSON schema → (datatype, [-1, *dims]); None when it describes no tensor."""
    shape = [-1]
    while schema.get("type") == "array":
        low, high = schema.get("minItems"), schema.get("maxItems")
        shape.append(low if isinstance(low, int) and low == high else -1)
        schema = schema.get("items") or {}
    if schema.get("type") == "object":
        values = schema.get("additionalProperties")
        if isinstance(values, Mapping) and values.get("type") in ("number", "integer"):
            return "FP64", [*shape, -1]  # a map per row (ZipMap) goes out as [N, K]
        return None
    datatype = _SCHEMA_DATATYPES.get(str(schema.get("type")))
    return (datatype, shape) if datatype is not None else None


def server_metadata(version: str) -> dict[str, Any]:
    """The v2 server metadata (`GET /v2`)."""
    return {"name": "fastinfer", "version": version, "extensions": list(EXTENSIONS)}
