"""Kubernetes probes and the health summary. Answered on the event loop from recorded state:
none of them waits for, or runs, a prediction."""

from __future__ import annotations

import platform
import time
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import Response

from fastinfer import __version__
from fastinfer.api.errors import ErrorBody, error_response
from fastinfer.registry import ModelRegistry

router = APIRouter(tags=["probes"])


class Alive(BaseModel):
    status: Literal["alive"] = "alive"


class Ready(BaseModel):
    status: Literal["ready"] = "ready"
    models: dict[str, str]


class ModelHealth(BaseModel):
    name: str
    version: str
    state: str
    reason: str | None


class Health(BaseModel):
    status: Literal["ready", "not_ready"]
    booted_at: datetime
    uptime_seconds: float
    version: str
    git_revision: str
    python: str
    models: list[ModelHealth]


@router.get("/livez", response_model=Alive, summary="Liveness: the process and its loop run")
async def livez() -> Alive:
    return Alive()


@router.get(
    "/readyz",
    response_model=Ready,
    summary="Readiness: every model loaded and passed its self-test",
    responses={503: {"model": ErrorBody, "description": "Not ready; details say why."}},
)
async def readyz(request: Request) -> Ready | Response:
    registry: ModelRegistry = request.app.state.registry
    waiting = registry.not_ready()
    if waiting:
        return error_response(
            request,
            503,
            "not_ready",
            "not ready: " + "; ".join(f"{name}: {why}" for name, why in waiting.items()),
            details={"models": waiting},
            headers={"Retry-After": "5"},
        )
    return Ready(models={m.name: m.version for m in registry})


@router.get("/health", response_model=Health, summary="Build, uptime and model summary")
async def health(request: Request) -> Health:
    state = request.app.state
    registry: ModelRegistry = state.registry
    return Health(
        status="ready" if not registry.not_ready() else "not_ready",
        booted_at=state.booted_at,
        uptime_seconds=round(time.monotonic() - state.booted_monotonic, 3),
        version=__version__,
        git_revision=state.git_revision,
        python=platform.python_version(),
        models=[
            ModelHealth(name=m.name, version=m.version, state=m.state.value, reason=m.reason)
            for m in registry
        ],
    )
