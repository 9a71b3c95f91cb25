"""`fastinfer serve`: the HTTP service for one or more models."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from fastinfer.cli.settings import load_settings
from fastinfer.model.spec import ModelConfigError, ModelDirectory, load_model_directory
from fastinfer.observability.logging import configure_logging, flush_logging, get_logger
from fastinfer.observability.tracing import TracingUnavailableError, require_otel
from fastinfer.repository.registry import parse_model_option
from fastinfer.serving.ports import PortUnavailableError, check_ports
from fastinfer.serving.supervisor import serve

# The option of each settings field `serve` takes, for error messages.
OPTIONS = {
    "host": "--host",
    "port": "--port",
    "trust_unpinned_artefacts": "--trust-unpinned",
    "log_level": "--log-level",
    "log_format": "--log-format",
    "max_rows": "--max-rows",
    "max_body_bytes": "--max-body-bytes",
    "cors_origins": "--cors-origin",
    "model_dirs": "MODEL_DIRS",
    "model_repository": "--repository",
    "version_policy": "--version-policy",
    "repository_poll_s": "--poll",
    "workers": "--workers",
    "health_port": "--health-port",
    "grpc_port": "--grpc-port",
    "health_process": "--health-process",
    "allow_no_models": "--allow-no-models",
}


def settings_overrides(params: Mapping[str, Any]) -> dict[str, Any]:
    """The settings fields `serve`'s options set (None: not given), from its parameters."""
    return {
        "host": params.get("host"),
        "port": params.get("port"),
        "trust_unpinned_artefacts": params.get("trust_unpinned"),
        "log_level": params.get("log_level"),
        "log_format": params.get("log_format"),
        "max_rows": params.get("max_rows"),
        "max_body_bytes": params.get("max_body_bytes"),
        "cors_origins": params.get("cors_origin") or None,
        "model_dirs": params.get("model_dirs") or None,
        "model_repository": params.get("repository"),
        "version_policy": params.get("version_policy"),
        "repository_poll_s": params.get("poll"),
        "workers": params.get("workers"),
        "health_port": params.get("health_port"),
        "grpc_port": params.get("grpc_port"),
        "health_process": params.get("health_process"),
        "allow_no_models": params.get("allow_no_models") or None,  # unset: the environment's
    }


def serve_command(
    model_dirs: Annotated[
        list[Path] | None,
        typer.Argument(help="Model directories (each holds a model.yaml).", show_default=False),
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            "-m",
            help="A bare artefact: NAME=PATH or NAME=PATH#sha256:HEX (64 hex digits). "
            "Repeatable. The runtime comes from the extension and content, the output kind "
            "from the model. Pickles, XGBoost UBJ, LightGBM and TorchScript files need a pin "
            "or --trust-unpinned; ONNX, XGBoost JSON and skops files do not.",
            show_default=False,
        ),
    ] = None,
    repository: Annotated[
        Path | None,
        typer.Option(
            "--repository",
            "-r",
            help="A model repository: <name>/<version>/model.yaml folders.",
            show_default=False,
        ),
    ] = None,
    version_policy: Annotated[
        str | None,
        typer.Option(help="Repository versions to load: all, latest or latest:N [default: all]."),
    ] = None,
    poll: Annotated[
        float | None,
        typer.Option(
            help="Scan the repository every this many seconds for new or removed versions.",
            show_default=False,
        ),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Listen address [default: 127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port [default: 8000].")] = None,
    trust_unpinned: Annotated[
        bool | None,
        typer.Option(
            "--trust-unpinned/--no-trust-unpinned",
            help="Load artefacts that have no sha256 pin. Pickles run code when loaded: only "
            "for files you built yourself.",
            show_default=False,
        ),
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning or error.")] = None,
    log_format: Annotated[str | None, typer.Option(help="auto, json or console.")] = None,
    max_rows: Annotated[int | None, typer.Option(help="Most rows in one request.")] = None,
    max_body_bytes: Annotated[int | None, typer.Option(help="Largest request body.")] = None,
    cors_origin: Annotated[
        list[str] | None, typer.Option(help="An origin allowed by CORS. Repeatable.")
    ] = None,
    health_port: Annotated[
        int | None,
        typer.Option(
            help="The health process's port (/livez, /readyz, /health, /metrics) "
            "[default: --port + 1].",
            show_default=False,
        ),
    ] = None,
    grpc_port: Annotated[
        int | None,
        typer.Option(
            help="Also serve the v2 protocol over gRPC on this port (needs grpcio) [default: off].",
            show_default=False,
        ),
    ] = None,
    health_process: Annotated[
        bool | None,
        typer.Option(
            "--health-process/--no-health-process",
            help="Answer probes from a separate process that never queues behind inference "
            "[default: on].",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Server processes [default: the CPUs available].", show_default=False),
    ] = None,
    allow_no_models: Annotated[
        bool,
        typer.Option(
            "--allow-no-models",
            help="Keep serving when no model loads at startup (to load them later through the "
            "admin API); without it, serve exits 1 with the reasons.",
        ),
    ] = False,
) -> None:
    """Serve models over HTTP: typed REST API, probes, and offline docs at /docs.

    Every setting can also come from a FASTINFER_* environment variable or a .env file (options
    win): `fastinfer config` shows the effective settings and where each came from, and
    docs/configuration.md lists them all.
    """
    overrides = settings_overrides(locals())
    settings = load_settings(overrides, OPTIONS)
    if settings.tracing:
        try:
            require_otel()  # before any fork: one clear error, not a crash in every worker
        except TracingUnavailableError as exc:
            typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
            raise typer.Exit(2) from None
    if settings.grpc_port is not None and importlib.util.find_spec("grpc") is None:
        typer.secho(
            "error: --grpc-port (FASTINFER_GRPC_PORT) needs grpcio, which is not installed: "
            "pip install 'fastinfer[grpc]'",
            err=True,
            fg=typer.colors.RED,
        )
        raise typer.Exit(2)
    configure_logging(settings.log_level, settings.log_format)
    log = get_logger("fastinfer.cli")
    try:
        directories: list[ModelDirectory] = [load_model_directory(p) for p in settings.model_dirs]
        directories += [parse_model_option(option) for option in model or []]
    except ModelConfigError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None
    if settings.model_repository is not None and not settings.model_repository.is_dir():
        typer.secho(
            f"error: the model repository {settings.model_repository} is not a directory",
            err=True,
            fg=typer.colors.RED,
        )
        raise typer.Exit(2)
    if not directories and settings.model_repository is None:
        typer.secho(
            "error: no models given: pass model directories, --model NAME=PATH, --repository "
            "DIR, or set FASTINFER_MODEL_DIRS / FASTINFER_MODEL_REPOSITORY",
            err=True,
            fg=typer.colors.RED,
        )
        raise typer.Exit(2)
    try:
        check_ports(settings)  # before the models load: a taken port is known in a second
    except PortUnavailableError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from None
    log.info("listening", url=f"http://{settings.host}:{settings.port}", docs="/docs")
    try:
        code = serve(settings, directories)
    except ModelConfigError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None
    finally:
        flush_logging()
    raise typer.Exit(code)
