"""`fastinfer new-key` and `fastinfer hash-key`: make API key entries without ever storing a key.

The server is configured with each key's sha256 only; the key itself is shown once, here.
"""

from __future__ import annotations

import secrets
import sys
from typing import Annotated, Any

import typer

from fastinfer.security.keys import hash_key, key_entry

_NAME = typer.Option("--name", help="The key's name (shown in logs and metrics).")
_SCOPE = typer.Option(
    "--scope", help="predict, admin or metrics. Repeatable [default: predict].", show_default=False
)
_MODEL = typer.Option(
    "--model",
    help="A model the key may use. Repeatable [default: every model].",
    show_default=False,
)

_RATE = typer.Option("--rate", help="Requests a second, on average [default: no limit].")
_BURST = typer.Option("--burst", help="Requests at once (needs --rate) [default: the rate].")
_DAILY_QUOTA = typer.Option("--daily-quota", help="Requests a day [default: no quota].")


def _entry(
    name: str, key: str, scopes: list[str] | None, models: list[str] | None, **limits: Any
) -> str:
    try:
        return key_entry(name, key, scopes or ["predict"], models, **limits)
    except ValueError as exc:  # pydantic's ValidationError is one
        raise typer.BadParameter(str(exc)) from None


def new_key_command(
    name: Annotated[str, _NAME] = "default",
    scope: Annotated[list[str] | None, _SCOPE] = None,
    model: Annotated[list[str] | None, _MODEL] = None,
    rate: Annotated[float | None, _RATE] = None,
    burst: Annotated[float | None, _BURST] = None,
    daily_quota: Annotated[int | None, _DAILY_QUOTA] = None,
) -> None:
    """Make a random API key: print it once, and its entry for FASTINFER_API_KEYS."""
    key = secrets.token_urlsafe(32)
    entry = _entry(name, key, scope, model, rate=rate, burst=burst, daily_quota=daily_quota)
    typer.echo(f"key (shown once, give it to the client): {key}")
    typer.echo(f"entry (for FASTINFER_API_KEYS): {entry}")


def hash_key_command(
    name: Annotated[str, _NAME] = "default",
    scope: Annotated[list[str] | None, _SCOPE] = None,
    model: Annotated[list[str] | None, _MODEL] = None,
) -> None:
    """Hash an existing key, read from stdin (or asked for): print its sha256 and its entry."""
    if sys.stdin.isatty():
        key = typer.prompt("API key", hide_input=True)
    else:
        key = sys.stdin.readline().rstrip("\r\n")
    if not key:
        raise typer.BadParameter("no key given")
    entry = _entry(name, key, scope, model)
    typer.echo(hash_key(key))
    typer.echo(entry)
