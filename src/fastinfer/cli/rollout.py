"""`fastinfer rollout`: stage, split, promote and roll back model versions on a running server.

A thin client of the admin API (docs/repository.md): each command is one call, answered once
every server process applied it. Only the default moves; every version stays loaded, so no
request is lost.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Annotated, Any
from urllib.parse import quote

import typer

rollout_app = typer.Typer(
    help="Stage, split (canary), promote and roll back model versions through the admin API.",
    no_args_is_help=True,
)

_URL = typer.Argument(help="The server's base URL, e.g. http://localhost:8000.")
_NAME = typer.Argument(help="The model's name.")
_VERSION = typer.Argument(help="The version.")
_TOKEN = typer.Option(
    "--token", envvar="FASTINFER_ADMIN_TOKEN", help="The admin token (or an admin API key)."
)
_TIMEOUT = typer.Option("--timeout", help="Seconds to wait for the answer (a load may be slow).")


def _send(
    method: str, url: str, token: str, body: dict[str, Any] | None, timeout: float
) -> tuple[int, dict[str, Any]]:
    """One admin call: its status and JSON body (an error's body too)."""
    if not url.startswith(("http://", "https://")):
        raise typer.BadParameter(f"{url!r}: the server's URL starts with http:// or https://")
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - http(s) only
    request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        try:
            return error.code, json.loads(error.read() or b"{}")
        except ValueError:
            return error.code, {"message": error.reason}
    except OSError as error:
        raise typer.BadParameter(f"cannot reach {url}: {error}") from None


def _call(
    method: str, url: str, path: str, token: str, body: dict[str, Any] | None, timeout: float
) -> dict[str, Any]:
    status, answer = _send(method, url.rstrip("/") + path, token, body, timeout)
    if status >= 400:
        typer.echo(
            f"refused ({status} {answer.get('code', 'error')}): {answer.get('message', answer)}",
            err=True,
        )
        raise typer.Exit(1)
    return answer


def _report(answer: dict[str, Any], name: str) -> None:
    """What the default of `name` is now, and whether every server process applied it."""
    split = answer.get("splits", {}).get(name)
    now = (
        " / ".join(f"{v}={w}" for v, w in split.items())
        if split
        else answer.get("models", {}).get(name)
    )
    workers = answer.get("workers", {})
    pending = sorted(w for w, s in workers.items() if s != "applied")
    typer.echo(
        f"{name}: default {now} (generation {answer.get('generation')}, "
        f"{'changed' if answer.get('changed') else 'unchanged'}; "
        f"{len(workers) - len(pending)}/{len(workers)} processes applied"
        + (f"; not yet: {', '.join(pending)})" if pending else ")")
    )
    if pending:
        raise typer.Exit(1)


def _default(url: str, name: str, token: str, body: dict[str, Any], timeout: float) -> None:
    path = f"/admin/models/{quote(name, safe='')}/default"
    _report(_call("PUT", url, path, token, body, timeout), name)


def _weights(pairs: list[str]) -> dict[str, int]:
    weights: dict[str, int] = {}
    for pair in pairs:
        version, sep, weight = pair.rpartition("=")
        if not sep or not version or not weight.isdigit() or int(weight) <= 0:
            raise typer.BadParameter(f"{pair!r}: expected VERSION=WEIGHT, a positive integer")
        weights[version] = int(weight)
    return weights


@rollout_app.command("stage")
def stage_command(
    url: Annotated[str, _URL],
    name: Annotated[str, _NAME],
    version: Annotated[str, _VERSION],
    token: Annotated[str, _TOKEN],
    timeout: Annotated[float, _TIMEOUT] = 300,
) -> None:
    """Load a version staged: self-tested and reachable at its version path, not the default."""
    path = f"/admin/models/{quote(name, safe='')}/versions/{quote(version, safe='')}/load"
    _report(_call("POST", url, path + "?stage=true", token, None, timeout), name)


@rollout_app.command("split")
def split_command(
    url: Annotated[str, _URL],
    name: Annotated[str, _NAME],
    weights: Annotated[list[str], typer.Argument(help="VERSION=WEIGHT, e.g. 1=90 2=10.")],
    token: Annotated[str, _TOKEN],
    timeout: Annotated[float, _TIMEOUT] = 60,
) -> None:
    """Split the default between loaded versions by weight (a canary: 1=90 2=10)."""
    _default(url, name, token, {"split": _weights(weights)}, timeout)


@rollout_app.command("promote")
def promote_command(
    url: Annotated[str, _URL],
    name: Annotated[str, _NAME],
    version: Annotated[str, _VERSION],
    token: Annotated[str, _TOKEN],
    timeout: Annotated[float, _TIMEOUT] = 60,
) -> None:
    """Make a loaded version the whole default (pinned)."""
    _default(url, name, token, {"version": version}, timeout)


@rollout_app.command("rollback")
def rollback_command(
    url: Annotated[str, _URL],
    name: Annotated[str, _NAME],
    version: Annotated[str, typer.Argument(help="The version to go back to.")],
    token: Annotated[str, _TOKEN],
    timeout: Annotated[float, _TIMEOUT] = 60,
) -> None:
    """Send the whole default back to VERSION (pinned); the other versions stay loaded."""
    _default(url, name, token, {"version": version}, timeout)


@rollout_app.command("status")
def status_command(
    url: Annotated[str, _URL],
    name: Annotated[str, _NAME],
    token: Annotated[str, _TOKEN],
    timeout: Annotated[float, _TIMEOUT] = 30,
) -> None:
    """Each loaded version of a model and its role: default, split (weight), staged."""
    state = _call("GET", url, "/admin/models", token, None, timeout)
    model = next((m for m in state.get("models", []) if m["name"] == name), None)
    if model is None:
        typer.echo(f"no model named {name!r}", err=True)
        raise typer.Exit(1)
    for version in model["versions"]:
        if not version["loaded"]:
            continue
        role = version.get("role") or "-"
        if version.get("weight") is not None:
            role += f" {version['weight']}"
        typer.echo(f"{name} {version['version']}: {version['state']}, {role}")
