"""The typed v1 API: list models, describe one, predict.

`predict` reads the raw body and lets the model's own validator parse it in one pass; the
per-model request and response types are published in OpenAPI by `api.openapi`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from fastinfer.api.context import request_id_of
from fastinfer.api.errors import ERROR_RESPONSES
from fastinfer.dataplane import TIMEOUT_HEADER, DataPlane
from fastinfer.errors import ModelNotFound, PayloadTooLarge, UnsupportedMediaType
from fastinfer.observability.logging import get_logger
from fastinfer.registry import ServedModel

router = APIRouter(prefix="/v1", tags=["models"])
log = get_logger("fastinfer.v1")
_LOGGED_BODY_BYTES = 8192
_JSON_TYPES = ("application/json",)


class ModelSummary(BaseModel):
    name: str
    version: str
    runtime: str
    ready: bool
    state: str


class ModelList(BaseModel):
    models: list[ModelSummary]


class ModelMetadata(ModelSummary):
    description: str | None
    reason: str | None = Field(description="Why the model is not ready, if it is not.")
    sha256: str | None = Field(description="sha256 of the artefact that was loaded.")
    loaded_at: datetime | None
    load_seconds: float | None
    self_test: str
    inputs: list[dict[str, Any]] | None = Field(description="The input fields, as configured.")
    input_schema: dict[str, Any] | None = Field(description="JSON schema of one input row.")
    output: dict[str, Any]
    example: dict[str, Any] | None
    max_rows: int


def _summary(model: ServedModel) -> ModelSummary:
    return ModelSummary(
        name=model.name,
        version=model.version,
        runtime=model.config.runtime,
        ready=model.ready,
        state=model.state.value,
    )


@router.get("/models", response_model=ModelList, summary="List the served models")
async def list_models(request: Request) -> ModelList:
    plane: DataPlane = request.app.state.dataplane
    return ModelList(models=[_summary(m) for m in plane.registry])


@router.get(
    "/models/{name}",
    response_model=ModelMetadata,
    summary="Describe a model: version, artefact hash, input schema, outputs",
    responses={404: ERROR_RESPONSES[404]},
)
async def model_metadata(name: str, request: Request) -> ModelMetadata:
    plane: DataPlane = request.app.state.dataplane
    model = plane.registry.get(name)
    if model is None:
        raise ModelNotFound(
            f"no model named {name!r}", details={"available": [m.name for m in plane.registry]}
        )
    schema = model.schema
    labels = model.runtime.output_labels() if model.runtime else None
    return ModelMetadata(
        **_summary(model).model_dump(),
        description=model.config.description,
        reason=model.reason,
        sha256=model.sha256,
        loaded_at=model.loaded_at,
        load_seconds=model.load_seconds,
        self_test=model.self_test,
        inputs=[f.model_dump(exclude_none=True) for f in schema.fields] if schema else None,
        input_schema=schema.row_json_schema() if schema else None,
        output={"kind": model.config.output.kind, "labels": labels},
        example=model.config.example,
        max_rows=schema.max_rows if schema else 0,
    )


async def read_json_body(request: Request, limit: int) -> bytes:
    """The body, refused with 415 unless it is JSON and 413 as soon as it passes `limit`."""
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type not in _JSON_TYPES and not media_type.endswith("+json"):
        shown = media_type or "none"
        raise UnsupportedMediaType(
            f"Content-Type must be application/json (got {shown})",
            details={"content_type": shown},
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(
            f"the body is {declared} bytes; at most {limit} are accepted",
            details={"max_body_bytes": limit},
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(
                f"the body is larger than {limit} bytes", details={"max_body_bytes": limit}
            )
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/models/{name}/predict",
    include_in_schema=False,  # published per model, with its own types, by api.openapi
)
async def predict(name: str, request: Request) -> Response:
    plane: DataPlane = request.app.state.dataplane
    model = plane.model(name)
    request.state.model, request.state.version = model.name, model.version
    deadline = plane.deadline(request.headers.get(TIMEOUT_HEADER))  # counts from arrival
    settings = request.app.state.settings
    body = await read_json_body(request, settings.max_body_bytes)
    if settings.log_request_bodies:  # off by default: bodies may hold personal data
        log.debug("request_body", body=body[:_LOGGED_BODY_BYTES].decode("utf-8", "replace"))
    rows = plane.parse(model, body)
    result = await plane.predict(model, rows, deadline, request_id_of(request.scope))
    return Response(orjson.dumps(result), media_type="application/json")
