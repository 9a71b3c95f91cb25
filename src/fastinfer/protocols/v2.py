"""Open Inference Protocol v2 (KServe / Triton REST) codec, with Triton's binary tensor data.

Pure functions between wire bytes and the data plane: `decode_infer_request` turns a v2 infer
body into fastinfer rows (which `RowSchema.validate_rows` then validates, exactly as for v1), and
`model_metadata` / `server_metadata` describe a model and the server in v2's terms. The way back,
predictions into output tensors and a v2 response body, is `fastinfer.protocols.v2_outputs`; the
input tensors' decoding, which gRPC shares (`decode_infer_document`), is `v2_inputs`.

Tabular models take one input tensor per field (name = field name, shape [N] or [N, 1]); a field
with a per-row `shape` S takes [N, *S]. A model whose inputs are all numeric scalars also takes
the one [N, F] tensor most v2 clients send (sklearn, XGBoost, ONNX exports: F = the number of
inputs, columns in the model's input order, any name that is not an input's): see
`batched_input`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from fastinfer.model.spec import InputField
from fastinfer.protocols.v2_inputs import (
    HEADER_LENGTH_HEADER,
    check_parameters,
    inputs_to_rows,
    json_type,
)
from fastinfer.protocols.v2_metadata import (
    batched_input,
    model_metadata,
    platform_of,
    server_metadata,
)
from fastinfer.protocols.v2_tensors import V2Error, V2TooManyRows

__all__ = [
    "BINARY_CONTENT_TYPE",
    "HEADER_LENGTH_HEADER",
    "JSON_CONTENT_TYPE",
    "InferRequest",
    "RequestedOutput",
    "V2Error",
    "V2TooManyRows",
    "batched_input",
    "decode_infer_document",
    "decode_infer_request",
    "model_metadata",
    "parse_header_length",
    "platform_of",
    "server_metadata",
]

JSON_CONTENT_TYPE = "application/json"
BINARY_CONTENT_TYPE = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    """An output the request names. `binary` is its `binary_data` parameter; None when the
    request left it out (then the request-level `binary_data_output` decides)."""

    name: str
    binary: bool | None = None


@dataclass(frozen=True, slots=True)
class InferRequest:
    """A decoded v2 infer request: rows for the data plane, and how to answer."""

    id: str | None
    parameters: dict[str, Any]
    rows: list[dict[str, Any]]
    outputs: list[RequestedOutput] | None = None  # None: every output
    binary_outputs: bool = False  # the request-level `binary_data_output` parameter


# ---------------------------------------------------------------------------------------------
# Requests


def parse_header_length(value: str | None) -> int | None:
    """The `Inference-Header-Content-Length` header → an int (None when absent)."""
    if value is None:
        return None
    text = value.strip()
    if not (text.isascii() and text.isdigit()):
        raise V2Error(f"{HEADER_LENGTH_HEADER} must be a whole number of bytes, got {value!r}")
    return int(text)


def decode_infer_request(
    body: bytes, header_length: int | None, fields: list[InputField], *, max_rows: int
) -> InferRequest:
    """A v2 infer body → rows keyed by field name (one dict per row, every field present).

    `header_length` is the `Inference-Header-Content-Length` header: the body's first that many
    bytes are the JSON header and the rest is binary tensor data for the inputs that carry
    `parameters.binary_data_size`, in input order (see `v2_inputs.inputs_to_rows`).
    """
    header, binary = _split_body(body, header_length)
    document = _parse_json(header, whole_body=header_length is None)
    return decode_infer_document(
        document, binary, fields, has_binary=header_length is not None, max_rows=max_rows
    )


def decode_infer_document(
    document: Any,
    binary: memoryview,
    fields: list[InputField],
    *,
    has_binary: bool,
    max_rows: int,
) -> InferRequest:
    """A v2 infer request document (the REST body's JSON; a gRPC request in its form) → the
    request. `binary` is the tensor data `binary_data_size` parameters index into."""
    if not isinstance(document, dict):
        raise V2Error(f"the request must be a JSON object with 'inputs', not {json_type(document)}")
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise V2Error(f"'id' must be a string, not {json_type(request_id)}")
    parameters = check_parameters(document.get("parameters"), "the request")
    binary_outputs = parameters.get("binary_data_output", False)
    if not isinstance(binary_outputs, bool):
        raise V2Error("parameter 'binary_data_output' must be true or false")
    outputs = _requested_outputs(document.get("outputs"))
    rows = inputs_to_rows(
        document.get("inputs"), fields, binary, has_binary=has_binary, max_rows=max_rows
    )
    return InferRequest(request_id, parameters, rows, outputs, binary_outputs)


def _split_body(body: bytes, header_length: int | None) -> tuple[bytes, memoryview]:
    if header_length is None:
        return body, memoryview(b"")
    if header_length < 0 or header_length > len(body):
        raise V2Error(
            f"{HEADER_LENGTH_HEADER} is {header_length} but the body has only {len(body)} bytes"
        )
    return body[:header_length], memoryview(body)[header_length:]


def _parse_json(data: bytes, *, whole_body: bool) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        what = "the request body" if whole_body else f"the JSON header ({HEADER_LENGTH_HEADER})"
        raise V2Error(f"{what} is not valid JSON: {exc}") from None


def _requested_outputs(value: Any) -> list[RequestedOutput] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise V2Error(f"'outputs' must be a list, not {json_type(value)}")
    requested: list[RequestedOutput] = []
    seen: set[str] = set()
    for index, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise V2Error(f"outputs[{index}] must be an object with a string 'name'")
        name = item["name"]
        if name in seen:
            raise V2Error(f"output {name!r} is requested twice")
        seen.add(name)
        parameters = check_parameters(item.get("parameters"), f"output {name!r}")
        binary = parameters.get("binary_data")
        if binary is not None and not isinstance(binary, bool):
            raise V2Error(f"output {name!r}: parameter 'binary_data' must be true or false")
        requested.append(RequestedOutput(name, binary))
    return requested or None  # an empty list asks for nothing in particular: every output
