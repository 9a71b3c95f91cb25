"""gRPC v2 messages ↔ the REST v2 codec's forms: one decoder and one set of checks for both.

A `ModelInferRequest` becomes the document a REST body parses to (inputs with `data`, or with
`parameters.binary_data_size` when the request sends `raw_input_contents`) and the binary data
those sizes index into; `protocols.v2.decode_infer_document` then decodes it exactly as it
decodes a REST request, so validation, the [N, F] tensor, NaN as missing in nullable columns
and every error message are the same. The way back writes `OutputTensor`s into a
`ModelInferResponse`: `raw_output_contents` (as Triton answers; what tritonclient reads) unless
the request asks for no binary data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastinfer.grpc.proto import grpc_service_pb2 as pb
from fastinfer.protocols.v2_inputs import json_type
from fastinfer.protocols.v2_outputs import OutputTensor
from fastinfer.protocols.v2_tensors import DATATYPES, V2Error, expected_binary_size

# The typed `contents` field each datatype's data travels in (FP16 and BF16 have none: raw only).
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_ALL_CONTENTS = tuple(dict.fromkeys(CONTENTS_FIELD.values()))


def parameter_value(parameter: pb.InferParameter) -> Any:
    """An `InferParameter` → its Python value (None when none is set)."""
    choice = parameter.WhichOneof("parameter_choice")
    return None if choice is None else getattr(parameter, choice)


def parameters_dict(parameters: Mapping[str, pb.InferParameter]) -> dict[str, Any] | None:
    """A parameters map → the REST form (None when empty, as an absent JSON member)."""
    return {key: parameter_value(value) for key, value in parameters.items()} or None


def request_document(request: pb.ModelInferRequest) -> tuple[dict[str, Any], bytes]:
    """The REST v2 document of a gRPC infer request, and its binary tensor data."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise V2Error(
            f"the request has {len(request.inputs)} inputs but {len(raw)} raw_input_contents; "
            "with raw_input_contents, every input has one, in input order"
        )
    inputs = [
        _input_document(index, tensor, raw[index] if raw else None)
        for index, tensor in enumerate(request.inputs)
    ]
    document: dict[str, Any] = {"inputs": inputs}
    if request.id:
        document["id"] = request.id
    parameters = parameters_dict(request.parameters)
    if parameters is not None:
        document["parameters"] = parameters
    if request.outputs:
        document["outputs"] = [
            {"name": output.name, "parameters": parameters_dict(output.parameters)}
            for output in request.outputs
        ]
    return document, b"".join(raw)


def _input_document(
    index: int, tensor: pb.ModelInferRequest.InferInputTensor, raw: bytes | None
) -> dict[str, Any]:
    name = tensor.name or f"inputs[{index}]"
    item: dict[str, Any] = {
        "name": tensor.name,
        "datatype": tensor.datatype,
        "shape": list(tensor.shape),
    }
    parameters = parameters_dict(tensor.parameters) or {}
    filled = [field for field in _ALL_CONTENTS if len(getattr(tensor.contents, field))]
    if raw is not None:
        if filled:
            raise V2Error(f"input {name!r} has both contents and raw_input_contents; give one")
        datatype = DATATYPES.get(tensor.datatype)
        needed = None if datatype is None else expected_binary_size(datatype, tensor.shape)
        if needed is not None and needed != len(raw):
            raise V2Error(
                f"input {name!r}: raw_input_contents[{index}] has {len(raw)} bytes but shape "
                f"{list(tensor.shape)} of {tensor.datatype} needs {needed}"
            )
        parameters["binary_data_size"] = len(raw)
    else:
        item["data"] = _contents_data(name, tensor, filled)
    if parameters:
        item["parameters"] = parameters
    return item


def _contents_data(
    name: str, tensor: pb.ModelInferRequest.InferInputTensor, filled: list[str]
) -> list[Any]:
    """The typed contents of an input as REST's flat `data` (BYTES as UTF-8 strings)."""
    field = CONTENTS_FIELD.get(tensor.datatype)
    if field is None:  # an unknown datatype: the shared decoder names the known ones
        return list(getattr(tensor.contents, filled[0])) if filled else []
    others = [f for f in filled if f != field]
    if others:
        raise V2Error(
            f"input {name!r}: datatype {tensor.datatype} takes its data in contents.{field}, "
            f"not contents.{others[0]}"
        )
    values = list(getattr(tensor.contents, field))
    if field != "bytes_contents":
        return values
    try:
        return [value.decode("utf-8") for value in values]
    except UnicodeDecodeError as exc:
        raise V2Error(f"input {name!r}: a BYTES element is not valid UTF-8 ({exc})") from None


def set_parameter(target: pb.InferParameter, value: Any) -> None:
    """Write a Python scalar into an `InferParameter` (anything else as its JSON-ish text)."""
    if isinstance(value, bool):
        target.bool_param = value
    elif isinstance(value, int):
        target.int64_param = value
    elif isinstance(value, float):
        target.double_param = value
    elif isinstance(value, str):
        target.string_param = value
    else:
        raise V2Error(f"a parameter of type {json_type(value)} cannot be sent over gRPC")


def infer_response(
    model_name: str,
    model_version: str,
    response_id: str,
    request_id: str,
    chosen: list[tuple[OutputTensor, bool]],
) -> pb.ModelInferResponse:
    """The response for the chosen outputs (each with whether it asked for binary data): all
    in `raw_output_contents` if any did, since clients index raw contents by output position,
    else in typed `contents`."""
    response = pb.ModelInferResponse(
        model_name=model_name, model_version=model_version, id=response_id
    )
    response.parameters["request_id"].string_param = request_id
    raw = any(binary for _, binary in chosen)
    for tensor, _ in chosen:
        output = response.outputs.add(name=tensor.name, datatype=tensor.datatype)
        output.shape.extend(tensor.shape)
        if raw:
            response.raw_output_contents.append(tensor.binary_data())
            continue
        field = CONTENTS_FIELD.get(tensor.datatype)
        if field is None:
            raise ValueError(f"output {tensor.name!r}: no gRPC contents for {tensor.datatype}")
        values = tensor.json_data()
        flat = values if isinstance(values, list) else values.tolist()
        if field == "bytes_contents":
            flat = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in flat]
        getattr(output.contents, field).extend(flat)
    return response
