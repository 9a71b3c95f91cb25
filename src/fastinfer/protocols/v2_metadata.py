"""Open Inference Protocol (v2) metadata: what the server and each model say about themselves.

Shapes use -1 for the row dimension; datatypes are the ones `v2` decodes each field from.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastinfer.model.spec import InputField
from fastinfer.protocols.v2_tensors import FIELD_DATATYPES

EXTENSIONS = ("binary_tensor_data", "model_repository")


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
    columns also accept [N, 1].
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
    return {
        "name": name,
        "versions": versions,
        "platform": platform,
        "inputs": inputs,
        "outputs": outputs,
    }


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
