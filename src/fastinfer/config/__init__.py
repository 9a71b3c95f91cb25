"""Service settings, read from `FASTINFER_*` environment variables and an optional `.env` file.

The API key entries a setting holds are in `api_keys`; explaining a bad setting to an operator
(one line per problem, typos of variable names) is in `explain`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from fastinfer.config.api_keys import ApiKeySpec


def _split_list(value: object) -> object:
    """Accept `a,b` as well as a JSON list for list-valued env vars."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            return json.loads(stripped)
        return [item.strip() for item in stripped.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    """Everything an operator can set. Each field is `FASTINFER_<NAME>` in the environment."""

    model_config = SettingsConfigDict(
        env_prefix="FASTINFER_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port to listen on.")
    model_dirs: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="Model directories to serve (comma-separated)."
    )
    model_repository: Path | None = Field(
        default=None,
        description="A model repository: <name>/<version>/model.yaml folders. Every model in it "
        "is served (the versions the version policy picks), beside any model directories.",
    )
    version_policy: str = Field(
        default="all",
        pattern=r"^(all|latest(:[1-9][0-9]*)?)$",
        description="Which repository versions load: all, latest, or latest:N.",
    )
    default_versions: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="Pinned default versions, NAME=VERSION comma-separated (default: newest).",
    )
    new_versions: Literal["promote", "stage"] = Field(
        default="promote",
        description="A version new to a model (polling, repository sync, admin load): promote "
        "(the newest becomes the default) or stage (loaded and reachable at its version path; "
        "the default stays until an operator promotes it).",
    )
    repository_poll_s: float | None = Field(
        default=None,
        gt=0,
        description="Scan the repository this often and load new versions / unload removed "
        "ones (off by default; the admin API does it on demand).",
    )
    admin_token: SecretStr | None = Field(
        default=None,
        description="Bearer token of the admin API (load, unload, reload, default version). "
        "The admin API is off when unset.",
    )
    api_keys: list[ApiKeySpec] = Field(
        default_factory=list,
        description="API keys, as a JSON list of {name, sha256, scopes, models, rate, burst} "
        "(sha256 of the key: `fastinfer new-key`). Any key turns authentication on.",
    )
    api_keys_file: Path | None = Field(
        default=None,
        description="A JSON file of API keys like FASTINFER_API_KEYS (e.g. a mounted Secret).",
    )
    metrics_auth: bool = Field(
        default=False,
        description="With API keys: /metrics needs a key with the metrics or admin scope "
        "(off: /metrics is open; the health port's /metrics is always open).",
    )
    docs_auth: bool = Field(
        default=False,
        description="With API keys: /docs, /redoc and /openapi.json need a predict key.",
    )
    reload_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description="How long a model change may take to load and reach every server process.",
    )
    trust_unpinned_artefacts: bool = Field(
        default=False,
        description="Allow loading a bare artefact that has no sha256 pin. Loading a pickle runs "
        "code: only enable this for files you built yourself.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins allowed by CORS (comma-separated); none by default.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="debug, info, warning or error."
    )
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto", description="auto: console on a terminal, JSON otherwise."
    )
    log_request_bodies: bool = Field(
        default=False, description="Write request bodies to the debug log (off: they may hold PII)."
    )
    max_rows: int = Field(default=1024, ge=1, description="Most rows accepted in one request.")
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1024,
        description="Largest request body accepted by predict and infer, in bytes.",
    )
    max_control_body_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description="Largest request body accepted by every other route (feedback, admin, the "
        "v2 repository), in bytes: read in full, under this limit, before the route runs.",
    )
    allow_no_models: bool = Field(
        default=False,
        description="Keep serving when no model could be loaded at startup (every one failed, or "
        "an empty repository), for models loaded later through the admin API. Off: serve exits "
        "1 with the reasons, as a crash-looping pod shows it.",
    )
    workers: int | None = Field(
        default=None,
        ge=1,
        description="Server processes; each holds every model and its own queues. "
        "Default: the CPUs this process may use (affinity and cgroup quota).",
    )
    inference_threads: int = Field(
        default=1, ge=1, description="Inference threads per model in each server process."
    )
    request_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Deadline of a prediction when the request sends no X-Request-Timeout.",
    )
    max_request_timeout_s: float = Field(
        default=300.0, gt=0, description="Longest X-Request-Timeout honoured."
    )
    drain_timeout_s: float = Field(
        default=25.0,
        ge=0,
        description="On SIGTERM, how long accepted requests may take to finish before exit.",
    )
    drain_delay_s: float = Field(
        default=0.0,
        ge=0,
        description="On SIGTERM, keep accepting new connections this long while /readyz says "
        "503 (for load balancers without a preStop hook).",
    )
    health_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="The health process's port: /livez, /readyz, /health and the merged "
        "/metrics, answered from every server process's heartbeat (never queued behind "
        "requests). Default: the serving port + 1.",
    )
    grpc_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Serve the Open Inference Protocol (v2) over gRPC on this port too, from every "
        "server process (needs grpcio: pip install 'fastinfer[grpc]'). Off by default.",
    )
    health_process: bool = Field(
        default=True,
        description="Run the health process (off: probes only on the serving port, answered by "
        "the event loop that also parses requests, so a model holding the GIL delays them).",
    )
    loop_block_s: float = Field(
        default=10.0,
        gt=0,
        description="With a health port: /livez fails when a server process's event loop has "
        "not run for this long.",
    )
    watchdog_s: float = Field(
        default=60.0,
        gt=0,
        description="/livez fails when inference makes no progress this long with work waiting.",
    )
    tracing: bool = Field(
        default=False,
        description="Export OpenTelemetry traces (request, queue, inference spans) over OTLP/HTTP "
        "to OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT. Needs the otel extra (opentelemetry-sdk, "
        "opentelemetry-exporter-otlp-proto-http).",
    )

    prediction_log: Literal["off", "jsonl", "postgres"] = Field(
        default="off",
        description="Where each prediction is logged (inputs, outputs, latency): off, jsonl "
        "(rotating files in prediction_log_dir) or postgres (prediction_log_dsn).",
    )
    prediction_log_dir: Path = Field(
        default=Path("predictions"),
        description="Directory of the JSONL prediction log (one file per server process).",
    )
    prediction_log_dsn: SecretStr | None = Field(
        default=None,
        description="PostgreSQL connection string of the postgres prediction log "
        "(libpq form, e.g. postgresql://user:password@host/db); its tables are created.",
    )
    prediction_log_sample_rate: float = Field(
        default=1.0, ge=0.0, le=1.0, description="Fraction of prediction requests logged."
    )
    prediction_log_redact: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description='Input fields whose values are replaced by "[redacted]" in the log '
        "(comma-separated names).",
    )
    prediction_log_buffer: int = Field(
        default=10_000,
        ge=1,
        description="Rows waiting to be written, per server process; more are dropped (counted), "
        "never waited for.",
    )
    prediction_log_batch: int = Field(
        default=1_000, ge=1, description="Most rows the prediction log writes in one batch."
    )
    prediction_log_flush_s: float = Field(
        default=1.0, gt=0, description="How often the prediction log writes what is waiting."
    )
    prediction_log_durability: Literal["buffered", "durable"] = Field(
        default="buffered",
        description="buffered: rows are written in the background, a process killed with "
        "SIGKILL loses what its buffer held (up to prediction_log_flush_s of rows, or the whole "
        "buffer while the sink fails). durable: a prediction is answered only once its batch is "
        "written (JSONL: flushed and fsync'ed; PostgreSQL: committed), else 503.",
    )
    prediction_log_max_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        description="A JSONL file is rotated once it would grow past this size.",
    )
    prediction_log_backups: int = Field(
        default=10, ge=0, description="Rotated JSONL files kept (the oldest are deleted)."
    )
    feedback_window_s: float = Field(
        default=3600.0,
        gt=0,
        description="Live accuracy covers the feedback of this many seconds; predictions can be "
        "given feedback for this long.",
    )
    drift_window_s: float = Field(
        default=3600.0, gt=0, description="Drift compares the inputs of this many seconds."
    )
    max_string_length: int = Field(
        default=65_536,
        ge=1,
        description="Longest string value accepted in any input field (a field's own max_length "
        "wins when smaller).",
    )
    max_json_depth: int = Field(
        default=32,
        ge=4,
        description="Deepest nesting of a v1 body where the schema does not bound it (the "
        "ignored extra fields of models with allow_extra_fields).",
    )
    max_fields_per_row: int = Field(
        default=1024,
        ge=1,
        description="Most keys in one row, for models with allow_extra_fields (others refuse "
        "unknown fields anyway).",
    )
    shed_hold_s: float = Field(
        default=1.0,
        ge=0,
        description="A predict refused for overload (503) is answered after up to this many "
        "seconds (at most its Retry-After), so clients retrying at once cannot spend the "
        "capacity on refusals; 0 answers at once.",
    )
    max_held_refusals: int = Field(
        default=4096,
        ge=0,
        description="Most refusals held at once per server process; beyond, answered at once.",
    )
    max_header_bytes: int = Field(
        default=16 * 1024,
        ge=1024,
        description="Largest request line and headers together, in bytes (431 beyond it), "
        "counted as they arrive whatever the HTTP parser.",
    )
    header_read_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="A request line and headers not received in full within this many seconds "
        "of their first byte are answered 408 and the connection closed.",
    )
    body_read_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="A request body not received in full within this many seconds is answered "
        "408 and its connection closed (slow clients cannot hold a worker).",
    )

    @property
    def probe_port(self) -> int | None:
        """Where the health process listens; None when it is off."""
        if not self.health_process:
            return None
        if self.health_port is not None:
            return self.health_port
        if self.port == 0:
            return 0  # an ephemeral serving port: an ephemeral health port too
        return self.port + 1 if self.port < 65535 else self.port - 1

    @field_validator("model_dirs", "cors_origins", "prediction_log_redact", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return _split_list(value)

    @field_validator("default_versions", mode="before")
    @classmethod
    def _pairs(cls, value: object) -> object:
        if isinstance(value, str):
            if value.strip().startswith("{"):
                return json.loads(value)
            pairs = [item.split("=", 1) for item in value.split(",") if item.strip()]
            if any(len(pair) != 2 for pair in pairs):
                raise ValueError("expected NAME=VERSION pairs separated by commas")
            return {name.strip(): version.strip() for name, version in pairs}
        return value
