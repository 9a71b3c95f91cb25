"""The Open Inference Protocol (v2) REST API, beside the typed v1 API.

Same data plane as v1 (model resolution, validation by the model's schema, admission, batching,
deadlines, logging); only the wire format differs, which `protocols.v2` encodes. Errors are
`{"error": "..."}` with a 4xx/5xx status, as v2 clients (tritonclient, KServe) expect.
Inference is served on the hot path by `api.service`; the rest are ordinary routes.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.background import BackgroundTask
from starlette.responses import Response

from fastinfer import __version__
from fastinfer.api.admin import operator, require_admin
from fastinfer.api.context import context_for, request_id_of
from fastinfer.api.errors import v2_error
from fastinfer.api.probes import liveness, readiness
from fastinfer.api.routes import ADMIN, OPEN, requires
from fastinfer.api.v1_infer import run_after
from fastinfer.api.v2_infer import infer_exchange
from fastinfer.dataplane import DataPlane
from fastinfer.errors import ServiceError
from fastinfer.protocols import v2
from fastinfer.repository import index as repository
from fastinfer.repository.manager import ChangeRefused, ModelManager
from fastinfer.repository.probed import ProbedState
from fastinfer.repository.registry import ModelRegistry

router = APIRouter(prefix="/v2", tags=["open inference protocol (v2)"])


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(v2_error(message), status, headers, media_type="application/json")


# -- server ---------------------------------------------------------------------------------


@router.get("", summary="Server metadata")
async def server_metadata() -> Response:
    return _json(v2.server_metadata(__version__))


@router.get("/health/live", summary="Server liveness", dependencies=[requires(OPEN)])
async def server_live(request: Request) -> Response:
    status, body, _ = liveness(ProbedState.of(request.app.state), request_id_of(request.scope))
    return _json({"live": True}) if status == 200 else _error(status, body["message"])


@router.get(
    "/health/ready",
    summary="Server readiness: every model has a version to answer",
    dependencies=[requires(OPEN)],
)
async def server_ready(request: Request) -> Response:
    state = ProbedState.of(request.app.state)
    status, body, headers = readiness(state, request_id_of(request.scope))
    if status == 200:
        return _json({"ready": True})
    return _error(status, body["message"], headers)


# -- models ---------------------------------------------------------------------------------


def _metadata(request: Request, name: str, version: str | None) -> Response:
    plane: DataPlane = request.app.state.dataplane
    try:
        return _json(plane.v2_metadata(name, version))
    except ServiceError as exc:
        return _error(exc.status, exc.message)


def _ready(request: Request, name: str, version: str | None) -> Response:
    plane: DataPlane = request.app.state.dataplane
    try:
        _, model = plane.version(name, version)
    except ServiceError as exc:
        return _error(exc.status, exc.message)
    if not model.serving:
        return _error(503, f"model {name!r} version {model.version!r} is not ready")
    return _json({"name": model.name, "version": model.version, "ready": True})


@router.get("/models/{name}", summary="Model metadata (default version)")
async def model_metadata(name: str, request: Request) -> Response:
    return _metadata(request, name, None)


@router.get("/models/{name}/versions/{version}", summary="Model version metadata")
async def version_metadata(name: str, version: str, request: Request) -> Response:
    return _metadata(request, name, version)


@router.get("/models/{name}/ready", summary="Model readiness (default version)")
async def model_ready(name: str, request: Request) -> Response:
    return _ready(request, name, None)


@router.get("/models/{name}/versions/{version}/ready", summary="Model version readiness")
async def version_ready(name: str, version: str, request: Request) -> Response:
    return _ready(request, name, version)


@router.post("/models/{name}/infer", summary="Inference (default version)")
async def infer(name: str, request: Request) -> Response:
    """Served on the hot path; this route documents it and answers cross-origin requests."""
    return await _infer_route(request, name, None)


@router.post("/models/{name}/versions/{version}/infer", summary="Inference (one version)")
async def infer_version(name: str, version: str, request: Request) -> Response:
    return await _infer_route(request, name, version)


async def _infer_route(request: Request, name: str, version: str | None) -> Response:
    plane: DataPlane = request.app.state.dataplane
    context = context_for(request.scope)
    status, body, headers = await infer_exchange(
        plane, name, version, request.scope, request.receive, context
    )
    media_type = headers.pop("Content-Type", "application/json")
    after, context.after_response = context.after_response, None
    background = BackgroundTask(run_after, after) if after is not None else None
    return Response(body, status, headers, media_type=media_type, background=background)


# -- the repository extension -----------------------------------------------------------------


@router.post("/repository/index", summary="Every model version in the repository and its state")
async def repository_index(request: Request) -> Response:
    registry: ModelRegistry = request.app.state.registry
    manager: ModelManager = request.app.state.manager
    raw = await request.body()
    try:
        options = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError:
        return _error(400, 'the body must be JSON, e.g. {"ready": true}')
    ready_only = isinstance(options, dict) and bool(options.get("ready"))
    return _json(repository.repository_index(registry, manager, ready_only=ready_only))


async def _change(change: Any) -> Response:
    try:
        await change
    except ChangeRefused as refused:
        return _error(refused.status, refused.message)
    return _json({})


@router.post(
    "/repository/models/{name}/load",
    summary="Load a model's versions from the repository (needs the admin token)",
    dependencies=[Depends(require_admin), requires(ADMIN)],
)
async def repository_load(name: str, request: Request) -> Response:
    manager: ModelManager = request.app.state.manager
    return await _change(manager.load_model(name))


@router.post(
    "/repository/models/{name}/unload",
    summary="Unload every version of a model (needs the admin token)",
    dependencies=[Depends(require_admin), requires(ADMIN)],
)
async def repository_unload(name: str, request: Request) -> Response:
    manager: ModelManager = request.app.state.manager
    return await _change(manager.unload(name, by=operator(request)))
