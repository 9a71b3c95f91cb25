"""Reading the settings for a command: mistakes as one line each, typos with a suggestion."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import typer
from dotenv import dotenv_values

from fastinfer.config import Settings
from fastinfer.config.explain import explain_settings_error, unknown_variables


def env_file_values() -> dict[str, str]:
    """The `.env` file's variables, as Settings reads them (none when there is no file)."""
    env_file = Settings.model_config.get("env_file")
    if not isinstance(env_file, str | Path) or not Path(env_file).is_file():
        return {}
    return {k: v for k, v in dotenv_values(env_file).items() if v is not None}


def load_settings(overrides: Mapping[str, Any], options: Mapping[str, str]) -> Settings:
    """Settings from defaults, `.env`, the environment and `overrides` (the options given, by
    field; `options` names each field's option for the messages). Exit 2 on a mistake."""
    for warning in unknown_variables([*os.environ, *env_file_values()]):
        typer.secho(f"warning: {warning}", err=True, fg=typer.colors.YELLOW)
    given = {field: value for field, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValueError as exc:
        named = {field: option for field, option in options.items() if field in given}
        for line in explain_settings_error(exc, named):
            typer.secho(f"error: {line}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None
