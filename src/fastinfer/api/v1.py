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
from fastinfer.repository.layout import newest, version_key
from fastinfer.repository.served import ModelVersions, ServedModel
from fastinfer.repository.state import Unloaded

router = APIRouter(prefix="/v1", tags=["models"])


class VersionSummary(BaseModel):
    version: str
    state: str = Field(description="loading, ready, failed, or unloaded (by an operator).")
    ready: bool
    default: bool = Field(description="Whether it answers unversioned requests (or a share).")
    role: str | None = Field(
        default=None,
        description="default, split (a share of unversioned requests by `weight`), staged "
        "(loaded and reachable at its version path; the default once promoted), or null.",
    )
    weight: int | None = Field(default=None, description="Its weight in the default's split.")
    unloaded_at: datetime | None = Field(
        default=None,
        description="When an operator unloaded it (who: `GET /admin/models`, for admins only).",
    )


class ModelSummary(BaseModel):
    name: str
    version: str = Field(description="The default version (the newest, unless pinned).")
    runtime: str
    ready: bool
    state: str = Field(
        description="The default version's state; unloaded: an operator unloaded the model."
    )
    pinned: bool = Field(description="Whether the default version is pinned.")
    split: dict[str, int] | None = Field(
        default=None,
        description="The default split between versions by weight (a canary), if it is; "
        "`version` is then its heaviest version, and each answer names the one that answered.",
    )
    versions: list[VersionSummary] = Field(
        description="Every version: loaded ones and those an operator unloaded."
    )


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
    runtime_info: dict[str, Any] = Field(
        default_factory=dict,
        description="What the runtime reports about how it serves this model; sklearn: "
        "`compiled` (whether the compiled pipeline path is on) and, when off, `compiled_reason`.",
    )


def _summary(group: ModelVersions, model: ServedModel, held: dict[str, Unloaded]) -> ModelSummary:
    default = group.default()
    weights = group.split or {}
    versions = []
    for m in group.ordered():
        role = group.role(m.version)
        versions.append(
            VersionSummary(
                version=m.version,
                state=m.state.value,
                ready=m.serving,
                default=role in ("default", "split"),
                role=role,
                weight=weights.get(m.version),
            )
        )
    versions += [_unloaded(v, r) for v, r in held.items() if v not in group.versions]
    return ModelSummary(
        name=model.name,
        version=model.version,
        runtime=model.config.runtime,
        ready=model.serving,
        state=model.state.value,
        pinned=group.pinned is not None and default is not None and default.version == group.pinned,
        split=dict(weights) or None,
        versions=sorted(versions, key=lambda v: version_key(v.version)),
    )


def _unloaded(version: str, record: Unloaded) -> VersionSummary:
    return VersionSummary(
        version=version,
        state="unloaded",
        ready=False,
        default=False,
        unloaded_at=record.at,
    )


def _unloaded_model(name: str, held: dict[str, Unloaded]) -> ModelSummary:
    """A model an operator unloaded whole: listed, so the decision is visible, not served."""
    version = next((v for v, r in held.items() if r.pinned), None) or newest(held) or ""
    return ModelSummary(
        name=name,
        version=version,
        runtime=held[version].runtime,
        ready=False,
        state="unloaded",
        pinned=held[version].pinned,
        versions=[_unloaded(v, held[v]) for v in sorted(held, key=version_key)],
    )


def _allowed_models(request: Request) -> frozenset[str] | None:
    """The models the request's API key may use; None: every model (or auth is off)."""
    guard = getattr(request.app.state.service, "guard", None)
    name = context_for(request.scope).api_key
    return guard.models_of(name) if guard is not None and name is not None else None


@router.get("/models", response_model=ModelList, summary="List the served models")
async def list_models(request: Request) -> ModelList:
    plane: DataPlane = request.app.state.dataplane
    registry = plane.registry
    summaries = []
    allowed = _allowed_models(request)
    for name in sorted(set(registry.names()) | set(registry.unloaded)):
        if allowed is not None and name not in allowed:
            continue  # an API key limited to some models sees only those
        held = registry.unloaded.get(name, {})
        if registry.get(name) is None:
            summaries.append(_unloaded_model(name, held))
            continue
        group, model = plane.version(name, None)
        summaries.append(_summary(group, model, held))
    return ModelList(models=summaries)


@router.get(
    "/models/{name}",
    response_model=ModelMetadata,
    summary="Describe a model's default version: artefact hash, input schema, outputs",
    responses={404: ERROR_RESPONSES[404]},
)
async def model_metadata(name: str, request: Request) -> ModelMetadata:
    return _metadata(request.app.state.dataplane, name, None)


@router.get(
    "/models/{name}/versions/{version}",
    response_model=ModelMetadata,
    summary="Describe one version of a model",
    responses={404: ERROR_RESPONSES[404]},
)
async def version_metadata(name: str, version: str, request: Request) -> ModelMetadata:
    return _metadata(request.app.state.dataplane, name, version)


def _metadata(plane: DataPlane, name: str, version: str | None) -> ModelMetadata:
    group, model = plane.version(name, version)
    schema = model.schema
    labels = model.runtime.output_labels() if model.runtime else None
    held = plane.registry.unloaded.get(name, {})
    return ModelMetadata(
        **_summary(group, model, held).model_dump(),
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
        runtime_info=model.runtime.describe() if model.runtime else {},
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
