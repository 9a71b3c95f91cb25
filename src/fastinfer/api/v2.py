"""The Open Inference Protocol (v2) REST API, beside the typed v1 API.

Same data plane as v1 (model resolution, validation by the model's schema, admission, batching,
deadlines, logging); only the wire format differs, which `protocols.v2` encodes. Errors are
`{"error": "..."}` with a 4xx/5xx status, as v2 clients (tritonclient, KServe) expect.
Inference is served on the hot path by `api.service`; the rest are ordinary routes.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import Receive, Scope

from fastinfer import __version__
from fastinfer.api.admin import ChangeFailed, require_admin
from fastinfer.api.context import request_id_of
from fastinfer.api.errors import INTERNAL_MESSAGE, internal_error
from fastinfer.api.predict import (
    AFTER_RESPONSE,
    MODEL_VERSION_HEADER,
    SERVER_TIMING_HEADER,
    WORK_ITEM,
    header,
    read_body,
    run_after,
)
from fastinfer.dataplane import DataPlane
from fastinfer.errors import InferenceFailed, ServiceError
from fastinfer.observability.logging import get_logger
from fastinfer.protocols import v2, v2_outputs
from fastinfer.repository.layout import scan_repository, version_key
from fastinfer.repository.manager import ChangeRefused, ModelManager
from fastinfer.repository.registry import ModelRegistry
from fastinfer.repository.served import ServedModel

log = get_logger("fastinfer.v2")
router = APIRouter(prefix="/v2", tags=["open inference protocol (v2)"])
_PLATFORMS = {
    "sklearn": "sklearn",
    "onnx": "onnxruntime_onnx",
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
    "python": "python",
    "torchscript": "pytorch_libtorch",
}
INFER_PREFIX = "/v2/models/"
INFER_SUFFIX = "/infer"


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(error_body(message), status, headers, media_type="application/json")


async def infer_exchange(
    plane: DataPlane, name: str, version: str | None, scope: Scope, receive: Receive
) -> tuple[int, bytes, dict[str, str]]:
    """Status, body and headers of `POST /v2/models/{name}[/versions/{version}]/infer`."""
    request_id = request_id_of(scope)
    try:
        model = plane.model(name, version)
    except ServiceError as exc:
        return exc.status, error_body(exc.message), exc.headers
    try:
        state = scope.setdefault("state", {})
        state["model"], state["version"] = model.name, model.version
        body, headers = await _infer(plane, model, scope, receive, request_id)
        return 200, body, {**headers, MODEL_VERSION_HEADER: model.version}
    except v2.V2TooManyRows as exc:
        return 413, error_body(str(exc)), {}
    except v2.V2Error as exc:
        return 400, error_body(str(exc)), {}
    except ServiceError as exc:
        return exc.status, error_body(exc.message), exc.headers
    except Exception as exc:  # a bug: logged with an error id, never shown to the client
        error_id, _ = internal_error(request_id, scope["path"], exc)
        return 500, error_body(f"{INTERNAL_MESSAGE} (error id {error_id})"), {}
    finally:
        plane.release(model)


async def _infer(
    plane: DataPlane, model: ServedModel, scope: Scope, receive: Receive, request_id: str
) -> tuple[bytes, dict[str, str]]:
    assert model.schema is not None and model.runtime is not None
    deadline = plane.deadline(header(scope, b"x-request-timeout"))
    settings = plane.settings
    body = await read_body(scope, receive, settings.max_body_bytes, settings.body_read_timeout_s)
    length = v2.parse_header_length(header(scope, b"inference-header-content-length"))
    request = v2.decode_infer_request(
        body, length, model.schema.fields, max_rows=model.schema.max_rows
    )
    kind = model.config.output.kind
    available = v2_outputs.available_outputs(kind, model.runtime.output_schemas())
    if available is not None:
        v2_outputs.check_requested_outputs(request.outputs, available)
    rows = plane.validate(model, request.rows)
    if model.hooks.pre:
        rows = await plane.before_hooks(model, rows, request_id)
    predictions, item = await plane.infer(model, rows, deadline, request_id)
    scope["state"][WORK_ITEM] = item
    plane.observe(model, rows, predictions, request_id, scope["state"].get("started"))
    if model.hooks.post:
        scope["state"][AFTER_RESPONSE] = plane.after_hooks(model, rows, predictions, request_id)
    encoding = time.perf_counter()
    try:
        tensors = v2_outputs.predictions_to_outputs(
            predictions, kind, model.runtime.output_labels()
        )
    except ValueError as exc:
        log.error("v2_output_encoding_failed", model=model.label, error=str(exc))
        raise InferenceFailed("the model's outputs do not fit a v2 tensor") from None
    body, headers = v2_outputs.encode_infer_response(
        model.name,
        model.version,
        request_id,
        tensors,
        request.outputs,
        request.binary_outputs,
        client_id=request.id,
    )
    headers[SERVER_TIMING_HEADER] = item.server_timing(time.perf_counter() - encoding)
    return body, headers


def infer_target(path: str) -> tuple[str, str | None] | None:
    """(name, version) of a v2 infer path, or None if it is not one."""
    middle = path[len(INFER_PREFIX) : -len(INFER_SUFFIX)]
    if not middle:
        return None
    if "/" not in middle:
        return middle, None
    name, marker, version = middle.partition("/versions/")
    if marker and name and version and "/" not in name and "/" not in version:
        return name, version
    return None


# -- server ---------------------------------------------------------------------------------


@router.get("", summary="Server metadata")
async def server_metadata() -> Response:
    return _json(v2.server_metadata(__version__))


@router.get("/health/live", summary="Server liveness")
async def server_live(request: Request) -> Response:
    from fastinfer.api.probes import liveness

    status, body, _ = liveness(request.app.state, request_id_of(request.scope))
    return _json({"live": True}) if status == 200 else _error(status, body["message"])


@router.get("/health/ready", summary="Server readiness: every model has a version to answer")
async def server_ready(request: Request) -> Response:
    from fastinfer.api.probes import readiness

    status, body, headers = readiness(request.app.state, request_id_of(request.scope))
    if status == 200:
        return _json({"ready": True})
    return _error(status, body["message"], headers)


# -- models ---------------------------------------------------------------------------------


def _resolve(request: Request, name: str, version: str | None) -> ServedModel:
    registry: ModelRegistry = request.app.state.registry
    group = registry.get(name)
    if group is None:
        raise _NotFoundError(f"no model named {name!r}")
    model = registry.resolve(name, version)
    if model is None:
        raise _NotFoundError(
            f"model {name!r} has no version {version!r} (versions: {', '.join(group.versions)})"
        )
    return model


class _NotFoundError(Exception):
    pass


def _metadata(request: Request, name: str, version: str | None) -> Response:
    try:
        model = _resolve(request, name, version)
    except _NotFoundError as exc:
        return _error(404, str(exc))
    if model.schema is None or model.runtime is None:
        return _error(503, f"model {name!r} version {model.version!r} is not ready")
    registry: ModelRegistry = request.app.state.registry
    group = registry.get(name)
    versions = [m.version for m in group.ordered()] if group is not None else [model.version]
    return _json(
        v2.model_metadata(
            model.name,
            versions,
            _PLATFORMS.get(model.config.runtime, model.config.runtime),
            model.schema.fields,
            model.config.output.kind,
            model.runtime.output_labels(),
            model.runtime.output_schemas(),
        )
    )


def _ready(request: Request, name: str, version: str | None) -> Response:
    try:
        model = _resolve(request, name, version)
    except _NotFoundError as exc:
        return _error(404, str(exc))
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
    status, body, headers = await infer_exchange(
        plane, name, version, request.scope, request.receive
    )
    media_type = headers.pop("Content-Type", "application/json")
    after = request.scope["state"].pop(AFTER_RESPONSE, None)
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
    on_disk = scan_repository(manager.repository) if manager.repository is not None else {}
    index = []
    for name in sorted(set(registry.names()) | set(on_disk)):
        group = registry.get(name)
        loaded = group.versions if group is not None else {}
        for version in sorted(set(loaded) | set(on_disk.get(name, {})), key=version_key):
            model = loaded.get(version)
            if model is not None and model.serving:
                entry = {"name": name, "version": version, "state": "READY", "reason": ""}
            elif model is not None and model.state.value == "loading":
                entry = {"name": name, "version": version, "state": "LOADING", "reason": ""}
            else:
                reason = (model.reason if model else None) or registry.failures.get(
                    (name, version), "not loaded"
                )
                entry = {"name": name, "version": version, "state": "UNAVAILABLE", "reason": reason}
            if not ready_only or entry["state"] == "READY":
                index.append(entry)
    return _json(index)


async def _change(change: Any) -> Response:
    try:
        await change
    except ChangeRefused as refused:
        return _error(refused.status, refused.message)
    except ChangeFailed as failed:
        return _error(failed.status, failed.message)
    return _json({})


@router.post(
    "/repository/models/{name}/load",
    summary="Load a model's versions from the repository (needs the admin token)",
    dependencies=[Depends(require_admin)],
)
async def repository_load(name: str, request: Request) -> Response:
    manager: ModelManager = request.app.state.manager
    return await _change(manager.load_model(name))


@router.post(
    "/repository/models/{name}/unload",
    summary="Unload every version of a model (needs the admin token)",
    dependencies=[Depends(require_admin)],
)
async def repository_unload(name: str, request: Request) -> Response:
    manager: ModelManager = request.app.state.manager
    return await _change(manager.unload(name))
