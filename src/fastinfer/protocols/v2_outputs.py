"""Open Inference Protocol v2 responses: predictions → output tensors → the v2 response body.

Kept apart from `fastinfer.protocols.v2`, which decodes requests: the two directions share only
the tensor types (`fastinfer.protocols.v2_tensors`) and the requested outputs a request names.
Classifier predictions go out as two tensors, `label` (BYTES [N]) and `probabilities`
(FP64 [N, C], columns in label order); regressors as `value` (FP64 [N]); tensor models as one
tensor per named output.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from operator import itemgetter
from typing import Any

import numpy as np
import orjson

from fastinfer.protocols.v2 import (
    BINARY_CONTENT_TYPE,
    HEADER_LENGTH_HEADER,
    JSON_CONTENT_TYPE,
    RequestedOutput,
)
from fastinfer.protocols.v2_tensors import OutputTensor, V2Error, stack_values

__all__ = [
    "OutputTensor",
    "available_outputs",
    "check_requested_outputs",
    "choose_outputs",
    "encode_infer_response",
    "predictions_to_outputs",
]


def available_outputs(
    kind: str, output_schemas: Mapping[str, Any] | None = None
) -> list[str] | None:
    """The output names a model answers with, known before inference (None: not known)."""
    if kind == "classifier":
        return ["label", "probabilities"]
    if kind == "regressor":
        return ["value"]
    return list(output_schemas) if output_schemas is not None else None


def check_requested_outputs(
    requested: Sequence[RequestedOutput] | None, available_names: Collection[str] | None
) -> None:
    """Reject unknown requested outputs before inference is spent on the request (where the
    outputs are not known before inference, None: they are checked against the answer)."""
    if not requested or available_names is None:
        return
    unknown = [r.name for r in requested if r.name not in available_names]
    if unknown:
        raise V2Error(
            f"requested output(s) {', '.join(map(repr, unknown))} are not outputs of this model "
            f"(outputs: {', '.join(available_names) or 'none'})"
        )


def predictions_to_outputs(
    predictions: list[dict[str, Any]], kind: str, labels: list[str] | None
) -> list[OutputTensor]:
    """fastinfer predictions (one dict per row) → v2 output tensors stacked across rows.

    A problem here is the server's (the runtime answered in an unexpected form): ValueError,
    not V2Error.
    """
    rows = len(predictions)
    if kind == "classifier":
        return _classifier_outputs(predictions, labels)
    if kind == "regressor":
        try:
            values = np.array([p["value"] for p in predictions], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"regressor predictions must each hold a number 'value' ({exc})"
            ) from None
        return [OutputTensor("value", "FP64", [rows], values)]
    if kind != "tensor":
        raise ValueError(f"unknown output kind {kind!r}")
    if not predictions:
        return []
    names = list(predictions[0])
    try:
        return [stack_values(name, [p[name] for p in predictions]) for name in names]
    except KeyError as exc:
        raise ValueError(f"tensor predictions differ in their outputs: a row lacks {exc}") from None


def _classifier_outputs(
    predictions: list[dict[str, Any]], labels: list[str] | None
) -> list[OutputTensor]:
    rows = len(predictions)
    if labels is None:
        labels = list(predictions[0]["probabilities"]) if predictions else []
    width = len(labels)
    try:
        label_values = [str(p["label"]) for p in predictions]
        if width == 1:
            only = labels[0]
            table: list[Any] = [[p["probabilities"][only]] for p in predictions]
        elif width:
            getter = itemgetter(*labels)
            table = [getter(p["probabilities"]) for p in predictions]
        else:
            table = []
    except KeyError as exc:
        raise ValueError(
            f"classifier predictions must hold 'label' and a probability per label ({exc} missing)"
        ) from None
    probabilities = np.array(table, dtype=np.float64).reshape(rows, width)
    return [
        OutputTensor("label", "BYTES", [rows], label_values),
        OutputTensor("probabilities", "FP64", [rows, width], probabilities),
    ]


def choose_outputs(
    outputs: list[OutputTensor], requested: list[RequestedOutput] | None, binary_outputs: bool
) -> list[tuple[OutputTensor, bool]]:
    """The outputs to answer with, each with whether it goes as binary data: the requested
    ones in their order (every output when none are), binary if the output's `binary_data`
    says so, else if the request's `binary_data_output` does."""
    if requested is None:
        return [(tensor, binary_outputs) for tensor in outputs]
    by_name = {tensor.name: tensor for tensor in outputs}
    check_requested_outputs(requested, by_name)
    return [(by_name[r.name], binary_outputs if r.binary is None else r.binary) for r in requested]


def encode_infer_response(
    model_name: str,
    model_version: str,
    request_id: str | None,
    outputs: list[OutputTensor],
    requested: list[RequestedOutput] | None,
    binary_outputs: bool,
    *,
    client_id: str | None = None,
) -> tuple[bytes, dict[str, str]]:
    """Output tensors → the v2 response body and the headers it needs (Content-Type, and
    Inference-Header-Content-Length when tensor data follows the JSON in binary).

    `request_id` is fastinfer's own id (answered in `parameters.request_id`); `client_id` is the
    request's `id`, echoed as the response `id` (fastinfer's id stands in when there is none).
    Requested outputs pick and order the outputs; each goes binary if its `binary_data` says so,
    else if the request's `binary_data_output` does.
    """
    chosen = choose_outputs(outputs, requested, binary_outputs)
    entries: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for tensor, binary in chosen:
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": tensor.shape,
        }
        if binary:
            raw = tensor.binary_data()
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = tensor.json_data()
        entries.append(entry)
    document: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    response_id = client_id if client_id is not None else request_id
    if response_id is not None:
        document["id"] = response_id
    if request_id is not None:
        document["parameters"] = {"request_id": request_id}
    document["outputs"] = entries
    header = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return header, {"Content-Type": JSON_CONTENT_TYPE}
    headers = {"Content-Type": BINARY_CONTENT_TYPE, HEADER_LENGTH_HEADER: str(len(header))}
    return b"".join([header, *chunks]), headers
