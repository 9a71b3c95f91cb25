"""Builds the ASGI app: settings + model directories in, a wired FastAPI app out."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from fastinfer import __version__
from fastinfer.api import admin, docs, probes, v1, v2
from fastinfer.api import metrics as metrics_api
from fastinfer.api import monitoring as monitoring_api
from fastinfer.api.errors import install_error_handlers
from fastinfer.api.openapi import install_openapi
from fastinfer.api.service import ServiceApp
from fastinfer.config import Settings
from fastinfer.dataplane import DataPlane
from fastinfer.engine import Engine
from fastinfer.model.schema import InputLimits
from fastinfer.model.spec import ModelDirectory, load_model_directory
from fastinfer.monitoring.monitor import Monitor
from fastinfer.observability.access import log_access
from fastinfer.observability.logging import get_logger
from fastinfer.observability.metrics import Metrics, ModelSample
from fastinfer.observability.saturation import LoopMeter
from fastinfer.observability.tracing import Tracing
from fastinfer.repository.control import ControlBoard
from fastinfer.repository.layout import VersionPolicy, repository_directories
from fastinfer.repository.manager import ModelManager
from fastinfer.repository.probed import ProbedState
from fastinfer.repository.registry import ModelRegistry
from fastinfer.repository.served import ServedModel
from fastinfer.security.keys import build_guard
from fastinfer.serving.heartbeat import Heartbeat
from fastinfer.serving.heartbeat import HeartbeatBoard as Board
from fastinfer.serving.rundir import remove_run_dir, run_dir

if TYPE_CHECKING:
    from fastinfer.grpc.server import GrpcTransport

log = get_logger("fastinfer.app")
_IDLE_BUSY = 0.02  # a loop busy less than this share of a sample is idle: no probes next time
_SAMPLE_SECONDS = 0.25  # the gauges' sampling interval
_IDLE_SAMPLE_SECONDS = 1.0  # ... while the loop is idle (nothing queues: the gauges hold still)
_LOOP_PROBES = 8  # event-loop queue probes per sample

DESCRIPTION = """Inference for the models below, served by fastinfer.

* `POST /v1/models/{name}/predict` with `{"inputs": [row, ...]}`; each model's row type is below.
* Probes: `/livez` (process alive), `/readyz` (every model loaded and self-tested), `/health`.
* Errors always have the shape `{code, message, details, request_id}`.
"""


@cache
def git_revision() -> str:
    """The build's revision: from the environment (images), else from git (checkouts)."""
    env = os.environ.get("FASTINFER_GIT_REVISION")
    if env:
        return env
    with suppress(OSError, subprocess.SubprocessError):
        result = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],  # noqa: S607 - git from PATH on purpose
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=2,
            check=False,
        )
        if result.returncode == 0 and result.stdout.strip():
            return result.stdout.strip()
    return "unknown"


def build_registry(settings: Settings, directories: list[ModelDirectory]) -> ModelRegistry:
    """The registry for the given model directories plus the repository's chosen versions."""
    if settings.model_repository is not None:
        policy = VersionPolicy.parse(settings.version_policy)
        directories = [*directories, *repository_directories(settings.model_repository, policy)]
    return ModelRegistry(
        directories,
        max_rows=settings.max_rows,
        trust_unpinned=settings.trust_unpinned_artefacts,
        pins=settings.default_versions,
        limits=InputLimits(
            settings.max_string_length, settings.max_json_depth, settings.max_fields_per_row
        ),
    )


def create_app(
    settings: Settings | None = None,
    directories: list[ModelDirectory] | None = None,
    *,
    registry: ModelRegistry | None = None,
    heartbeat: tuple[Board, int] | None = None,
    control: tuple[ControlBoard, int] | None = None,
    listen_when_loaded: bool = False,
) -> ServiceApp:
    """The service for `directories` (default: `settings.model_dirs`), or for a registry whose
    models were already prepared (by a supervisor, before it forked this process).

    `control` is the board shared with the other server processes and this one's slot on it;
    a lone process makes its own. `listen_when_loaded`: finish startup only once the models
    are loaded (workers of a supervisor, whose probes the health port or siblings answer)."""
    settings = settings or Settings()
    if registry is None:
        if directories is None:
            directories = [load_model_directory(p) for p in settings.model_dirs]
        registry = build_registry(settings, directories)
    metrics = Metrics()
    shared_dir, own_dir = run_dir()
    engine = Engine(
        workers_per_model=settings.inference_threads,
        watchdog_s=settings.watchdog_s,
        observer=metrics,
    )
    board, slot = control if control is not None else (ControlBoard(1), 0)
    parts = _Parts(
        settings=settings,
        registry=registry,
        engine=engine,
        manager=ModelManager(registry, engine, settings, board, slot),
        metrics=metrics,
        monitor=Monitor(settings, shared_dir, metrics),
        run_dir=shared_dir if own_dir else None,
    )
    app = FastAPI(
        title="fastinfer",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        lifespan=_lifespan(parts, heartbeat, listen_when_loaded=listen_when_loaded),
    )
    _publish(app, parts)
    _install_routes(app, registry, settings)
    # Each server process gets its share of every key's rate limit (the board has a slot each).
    guard = build_guard(settings, processes=board.slots)
    if guard is not None:
        for key, rate in guard.limits.items():
            metrics.rate_limit.labels(key).set(rate)
    plane: DataPlane = app.state.dataplane
    service = ServiceApp(app, plane, metrics, cors=bool(settings.cors_origins), guard=guard)
    app.state.service = service
    return service


def _publish(app: FastAPI, parts: _Parts) -> None:
    """What FastAPI routes read from `app.state`, and the data plane every protocol calls."""
    state = app.state
    state.settings, state.registry, state.engine = parts.settings, parts.registry, parts.engine
    state.manager, state.metrics, state.monitor = parts.manager, parts.metrics, parts.monitor
    state.dataplane = DataPlane(
        parts.registry,
        parts.settings,
        parts.monitor,
        observers=[log_access, parts.metrics.answered],
    )
    state.booted_at = datetime.now(UTC)
    state.booted_monotonic = time.monotonic()
    state.git_revision = git_revision()


@dataclass(frozen=True)
class _Parts:
    """What one server process is made of (its lifespan starts and stops them)."""

    settings: Settings
    registry: ModelRegistry
    engine: Engine
    manager: ModelManager
    metrics: Metrics
    monitor: Monitor
    run_dir: Path | None  # a run directory this process made (and removes)


def _lifespan(
    parts: _Parts, heartbeat: tuple[Board, int] | None, *, listen_when_loaded: bool
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        plane: DataPlane = app.state.dataplane
        tracing = _start_tracing(plane, enabled=parts.settings.tracing)
        # Load in the background: /livez answers at once, /readyz says "loading" until done.
        loading = asyncio.create_task(parts.manager.start())
        sampling = asyncio.create_task(_sample_metrics(parts.metrics, parts.registry))
        await parts.monitor.start()
        beating = None
        if heartbeat is not None:
            beat = Heartbeat(
                heartbeat[0],
                heartbeat[1],
                ProbedState.of(app.state),
                loop_block_s=parts.settings.loop_block_s,
            )
            beating = asyncio.create_task(beat.run())
            loading.add_done_callback(lambda _: beat.nudge())  # ready: say so at once
        log.info("starting", models=[m.name for m in parts.registry], version=__version__)
        if listen_when_loaded:
            # Uvicorn listens once startup is over: a worker joins the port's SO_REUSEPORT group
            # only when it can answer, so a restarted worker never answers 503 "loading".
            await asyncio.shield(loading)
        grpc = await _start_grpc(app) if parts.settings.grpc_port is not None else None
        try:
            yield
        finally:
            if grpc is not None:  # begun with the HTTP drain (server.py): its calls finish
                await grpc.stop()
            for task in (loading, beating, sampling):
                if task is not None and not task.done():
                    task.cancel()
            await parts.manager.stop()
            await parts.engine.stop()
            await parts.monitor.stop()  # the prediction log's last batches, after the last answer
            parts.metrics.flush()  # the last counts of a process that is going away
            await _stop_tracing(plane, tracing)
            remove_run_dir(parts.run_dir)
            log.info("stopped")

    return lifespan


async def _start_grpc(app: FastAPI) -> GrpcTransport:
    """This process's gRPC server, on the data plane, guard and metrics HTTP uses (grpcio is
    imported here, after the fork, and only when a gRPC port is set: it is optional)."""
    from fastinfer.grpc.server import GrpcTransport
    from fastinfer.grpc.servicer import InferenceServicer

    state = app.state
    servicer = InferenceServicer(
        state.dataplane, ProbedState.of(state), state.metrics, state.service.guard
    )
    transport = GrpcTransport(servicer, state.settings)
    await transport.start()
    state.grpc = transport
    return transport


def _install_routes(app: FastAPI, registry: ModelRegistry, settings: Settings) -> None:
    install_error_handlers(app)
    app.include_router(probes.router)
    app.include_router(metrics_api.router)
    app.include_router(v1.router)
    app.include_router(v2.router)
    app.include_router(monitoring_api.router)
    app.include_router(admin.router)
    docs.install_docs(app)
    install_openapi(app, registry)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "X-Request-ID", "Authorization", "X-API-Key"],
            expose_headers=["X-Request-ID", "X-Model-Version", "Server-Timing"],
        )


def _start_tracing(plane: DataPlane, *, enabled: bool) -> Tracing | None:
    """Tracing exports from a thread: made in the lifespan, in the server process after any
    fork, and told about every answered request by the data plane."""
    if not enabled:
        return None
    tracing = Tracing()
    plane.observers.append(tracing)
    return tracing


async def _stop_tracing(plane: DataPlane, tracing: Tracing | None) -> None:
    """Export the spans still buffered (after the engine stopped: its last requests' spans)."""
    if tracing is not None:
        plane.observers.remove(tracing)
        await asyncio.to_thread(tracing.shutdown)


async def _sample_metrics(metrics: Metrics, registry: ModelRegistry) -> None:
    """Queue and in-flight gauges, the saturation average and model info, 4 times a second
    (once a second while the process is idle: its loop and no request in flight); between
    samples the event loop's queue is probed 8 times (a callback each: cheap)."""
    meter = LoopMeter()
    idle = False
    while True:
        if idle:  # nothing can be waiting on an idle loop: one wake-up, not twenty (idle CPU)
            await asyncio.sleep(_IDLE_SAMPLE_SECONDS)
        else:
            for _ in range(_LOOP_PROBES):
                meter.probe()
                await asyncio.sleep(_SAMPLE_SECONDS / _LOOP_PROBES)
        try:
            loop = meter.read()
            samples = [_sample(model) for model in registry]
            # A slow model's requests leave the loop idle: they still need the gauge at 4 Hz.
            idle = loop.busy_seconds < _IDLE_BUSY * loop.seconds and not any(
                s.in_flight for s in samples
            )
            metrics.sample(samples, loop)
        except Exception:  # a metrics bug must not stop the sampling, nor anything else
            log.exception("metrics_sampling_failed")


def _sample(model: ServedModel) -> ModelSample:
    engine = model.engine
    return ModelSample(
        name=model.name,
        version=model.version,
        runtime=model.config.runtime,
        sha256=model.sha256 or "",
        serving=model.serving,
        in_flight=model.in_flight,
        load_seconds=model.load_seconds,
        workers=engine.live_workers if engine is not None else 0,  # a dead one serves none
        queued_items=engine.queued_items if engine is not None else 0,
        queued_batches=(
            engine.queued_rows / engine.batching.max_batch_size if engine is not None else 0.0
        ),
        busy_seconds=engine.busy_seconds() if engine is not None else 0.0,
        batch_seconds=engine.batch_seconds_done if engine is not None else 0.0,
        rows_done=engine.rows_done if engine is not None else 0,
    )
