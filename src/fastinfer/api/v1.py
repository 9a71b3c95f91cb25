"""The typed v1 API: list models, describe one, predict.

`predict` reads the raw body and lets the model's own validator parse it in one pass; the
per-model request and response types are published in OpenAPI by `api.openapi`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from fastinfer.api.errors import ERROR_RESPONSES
from fastinfer.api.predict import predict_exchange
from fastinfer.dataplane import DataPlane
from fastinfer.errors import ModelNotFound
from fastinfer.registry import ServedModel

router = APIRouter(prefix="/v1", tags=["models"])


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


@router.post(
    "/models/{name}/predict",
    include_in_schema=False,  # published per model, with its own types, by api.openapi
)
async def predict(name: str, request: Request) -> Response:
    """Cross-origin requests come here (for the CORS headers); the rest take the hot path."""
    plane: DataPlane = request.app.state.dataplane
    body = await predict_exchange(plane, name, request.scope, request.receive)
    return Response(body, media_type="application/json")
