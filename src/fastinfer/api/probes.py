"""Kubernetes probes and the health summary, answered on the event loop from recorded state
(model states, worker heartbeats, the draining flag): none of them waits for, or runs, a
prediction, so a saturated engine can not starve them."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import Response

from fastinfer import __version__
from fastinfer.api.context import request_id_of
from fastinfer.api.errors import ErrorBody, error_content, error_example
from fastinfer.api.routes import OPEN, PREDICT, requires
from fastinfer.errors import public_reason
from fastinfer.repository.probed import ProbedState, readiness_problems
from fastinfer.repository.registry import ModelRegistry

router = APIRouter(tags=["probes"], dependencies=[requires(OPEN)])


class Alive(BaseModel):
    status: Literal["alive"] = "alive"


class Ready(BaseModel):
    status: Literal["ready"] = "ready"
    models: dict[str, str | None]


class ModelHealth(BaseModel):
    name: str
    version: str
    state: str
    reason: str | None
    default: bool
    in_flight: int
    hooks: dict[str, int] | None = None  # what the model's hooks did (failures are counted)


class Health(BaseModel):
    status: Literal["ready", "not_ready"]
    booted_at: datetime
    uptime_seconds: float
    version: str
    git_revision: str
    python: str
    pid: int
    rss_bytes: int | None
    models: list[ModelHealth]
    engine: dict[str, Any]


ProbeAnswer = tuple[int, dict[str, Any], dict[str, str]]  # status, JSON body, extra headers


def liveness(state: ProbedState, request_id: str) -> ProbeAnswer:
    engine = state.engine
    stalled = engine.stalled()
    if not stalled:
        return 200, {"status": "alive"}, {}
    message = "inference made no progress with work waiting: " + "; ".join(
        f"{name} for {seconds}s" for name, seconds in stalled.items()
    )
    details = {"stalled_seconds": stalled, "watchdog_s": engine.watchdog_s}
    return 503, _error("stalled", message, details, request_id), {}


def readiness(state: ProbedState, request_id: str) -> ProbeAnswer:
    waiting = {name: public_reason(why) for name, why in readiness_problems(state).items()}
    if not waiting:
        return 200, {"status": "ready", "models": state.registry.default_versions()}, {}
    message = "not ready: " + "; ".join(f"{name}: {why}" for name, why in waiting.items())
    body = _error("not_ready", message, {"models": waiting}, request_id)
    return 503, body, {"Retry-After": "5"}


def _error(code: str, message: str, details: Any, request_id: str) -> dict[str, Any]:
    return {"code": code, "message": message, "details": details, "request_id": request_id}


def _respond(answer: ProbeAnswer) -> Response:
    status, body, headers = answer
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


@router.get(
    "/livez",
    response_model=Alive,
    summary="Liveness: the event loop answers and inference is not wedged",
    responses={
        503: {
            "model": ErrorBody,
            "description": "Inference made no progress.",
            "content": error_content(
                error_example(
                    "stalled",
                    "inference made no progress with work waiting: titanic for 62s",
                    {"stalled_seconds": {"titanic": 62}, "watchdog_s": 60.0},
                )
            ),
        }
    },
)
async def livez(request: Request) -> Response:
    return _respond(liveness(ProbedState.of(request.app.state), request_id_of(request.scope)))


@router.get(
    "/readyz",
    response_model=Ready,
    summary="Readiness: every model loaded and passed its self-test",
    responses={
        503: {
            "model": ErrorBody,
            "description": "Not ready; details say why.",
            "content": error_content(
                error_example(
                    "not_ready", "not ready: titanic: loading", {"models": {"titanic": "loading"}}
                )
            ),
        }
    },
)
async def readyz(request: Request) -> Response:
    return _respond(readiness(ProbedState.of(request.app.state), request_id_of(request.scope)))


def _resident_bytes() -> int | None:
    """This process's resident memory, from /proc (Linux); None elsewhere."""
    try:
        pages = int(Path("/proc/self/statm").read_text(encoding="ascii").split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


@router.get(
    "/health",
    response_model=Health,
    summary="Build, uptime and model summary (needs a key when API keys are configured)",
    dependencies=[requires(PREDICT)],
)
async def health(request: Request) -> Health:
    state = request.app.state
    registry: ModelRegistry = state.registry
    defaults = registry.default_versions()
    return Health(
        status="ready" if not readiness_problems(ProbedState.of(state)) else "not_ready",
        booted_at=state.booted_at,
        uptime_seconds=round(time.monotonic() - state.booted_monotonic, 3),
        version=__version__,
        git_revision=state.git_revision,
        python=platform.python_version(),
        pid=os.getpid(),
        rss_bytes=_resident_bytes(),
        engine=state.engine.status(),
        models=[
            ModelHealth(
                name=m.name,
                version=m.version,
                state=m.state.value,
                reason=m.reason,
                default=defaults.get(m.name) == m.version,
                in_flight=m.in_flight,
                hooks=asdict(m.hooks.counters) if m.hooks else None,
            )
            for m in registry
        ],
    )
