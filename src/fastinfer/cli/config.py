"""`fastinfer config`: the settings `serve` would run with, and where each came from."""

from __future__ import annotations

import json
import os
from typing import Any

import typer
from pydantic import SecretStr

from fastinfer.cli.serve import OPTIONS, serve_command, settings_overrides
from fastinfer.cli.settings import env_file_values, load_settings
from fastinfer.config import Settings
from fastinfer.config.explain import variable_name

_serve = typer.Typer()
_serve.command()(serve_command)


def config_command(ctx: typer.Context) -> None:
    """Show the effective settings of `fastinfer serve` and where each came from: default,
    .env, environment or option. Give serve's options after `config` to see their effect
    (`fastinfer config --port 9000`). Secrets are shown as set or not, never their value.
    """
    command = typer.main.get_command(_serve)
    with command.make_context("fastinfer config", list(ctx.args)) as parsed:
        overrides = settings_overrides(parsed.params)
    settings = load_settings(overrides, OPTIONS)
    environment = {name.upper() for name in os.environ}
    dotenv = {name.upper() for name in env_file_values()}
    rows = []
    for field in Settings.model_fields:
        name = variable_name(field)
        if overrides.get(field) is not None:
            source = f"option {OPTIONS[field]}"
        elif name in environment:
            source = "environment"
        elif name in dotenv:
            source = ".env"
        else:
            source = "default"
        rows.append((name, _shown(getattr(settings, field)), source))
    width = max(len(name) for name, _, _ in rows)
    value_width = min(40, max(len(value) for _, value, _ in rows))
    for name, value, source in rows:
        typer.echo(f"{name:<{width}}  {value:<{value_width}}  {source}")


def _shown(value: Any) -> str:
    """A value as it would be written in the environment; secrets and keys only as present."""
    if isinstance(value, SecretStr):
        return "(set)" if value.get_secret_value() else "(empty)"
    if isinstance(value, list) and value and hasattr(value[0], "sha256"):
        return f"({len(value)} keys: {', '.join(key.name for key in value)})"
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(str(item) for item in value) or "(none)"
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)
