"""The typed v1 API: list models, describe one, predict.

`predict` reads the raw body and lets the model's own validator parse it in one pass; the
per-model request and response types are published in OpenAPI by `api.openapi`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask
from starlette.responses import Response

from fastinfer.api.context import context_for
from fastinfer.api.errors import ERROR_RESPONSES
from fastinfer.api.v1_infer import predict_exchange, run_after
from fastinfer.dataplane import DataPlane
from fastinfer.repository.served import ModelVersions, ServedModel

router = APIRouter(prefix="/v1", tags=["models"])


class VersionSummary(BaseModel):
    version: str
    state: str
    ready: bool
    default: bool


class ModelSummary(BaseModel):
    name: str
    version: str = Field(description="The default version (the newest, unless pinned).")
    runtime: str
    ready: bool
    state: str
    pinned: bool = Field(description="Whether the default version is pinned.")
    versions: list[VersionSummary]


class ModelList(BaseModel):
    models: list[ModelSummary]


class ModelMetadata(ModelSummary):
    description: str | None
    reason: str | None = Field(description="Why the version is not ready, if it is not.")
    sha256: str | None = Field(description="sha256 of the artefact that was loaded.")
    loaded_at: datetime | None
    load_seconds: float | None
    self_test: str
    inputs: list[dict[str, Any]] | None = Field(description="The input fields, as configured.")
    input_schema: dict[str, Any] | None = Field(description="JSON schema of one input row.")
    output: dict[str, Any]
    example: dict[str, Any] | None
    max_rows: int


def _summary(group: ModelVersions, model: ServedModel) -> ModelSummary:
    default = group.default()
    return ModelSummary(
        name=model.name,
        version=model.version,
        runtime=model.config.runtime,
        ready=model.serving,
        state=model.state.value,
        pinned=group.pinned is not None and default is not None and default.version == group.pinned,
        versions=[
            VersionSummary(
                version=m.version, state=m.state.value, ready=m.serving, default=m is default
            )
            for m in group.ordered()
        ],
    )


def _allowed_models(request: Request) -> frozenset[str] | None:
    """The models the request's API key may use; None: every model (or auth is off)."""
    guard = getattr(request.app.state.service, "guard", None)
    name = context_for(request.scope).api_key
    return guard.models_of(name) if guard is not None and name is not None else None


@router.get("/models", response_model=ModelList, summary="List the served models")
async def list_models(request: Request) -> ModelList:
    plane: DataPlane = request.app.state.dataplane
    summaries = []
    allowed = _allowed_models(request)
    for name in plane.registry.names():
        if allowed is not None and name not in allowed:
            continue  # an API key limited to some models sees only those
        group, model = plane.version(name, None)
        summaries.append(_summary(group, model))
    return ModelList(models=summaries)


@router.get(
    "/models/{name}",
    response_model=ModelMetadata,
    summary="Describe a model's default version: artefact hash, input schema, outputs",
    responses={404: ERROR_RESPONSES[404]},
)
async def model_metadata(name: str, request: Request) -> ModelMetadata:
    return _metadata(*request.app.state.dataplane.version(name, None))


@router.get(
    "/models/{name}/versions/{version}",
    response_model=ModelMetadata,
    summary="Describe one version of a model",
    responses={404: ERROR_RESPONSES[404]},
)
async def version_metadata(name: str, version: str, request: Request) -> ModelMetadata:
    return _metadata(*request.app.state.dataplane.version(name, version))


def _metadata(group: ModelVersions, model: ServedModel) -> ModelMetadata:
    schema = model.schema
    labels = model.runtime.output_labels() if model.runtime else None
    return ModelMetadata(
        **_summary(group, model).model_dump(),
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
    return await _predict(request, name, None)


@router.post("/models/{name}/versions/{version}/predict", include_in_schema=False)
async def predict_version(name: str, version: str, request: Request) -> Response:
    return await _predict(request, name, version)


async def _predict(request: Request, name: str, version: str | None) -> Response:
    plane: DataPlane = request.app.state.dataplane
    context = context_for(request.scope)
    status, body, headers = await predict_exchange(
        plane, name, version, request.scope, request.receive, context
    )
    after, context.after_response = context.after_response, None
    background = BackgroundTask(run_after, after) if after is not None else None
    return Response(body, status, headers, media_type="application/json", background=background)
