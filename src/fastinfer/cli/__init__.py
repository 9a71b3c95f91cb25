"""The `fastinfer` command: serve models, score files locally, inspect and scaffold model
directories, build images for them."""

from __future__ import annotations

import typer

from fastinfer import __version__
from fastinfer.cli.build import build_command
from fastinfer.cli.config import config_command
from fastinfer.cli.init import init_command
from fastinfer.cli.inspect import models_command
from fastinfer.cli.keys import hash_key_command, new_key_command
from fastinfer.cli.loadtest import loadtest_command
from fastinfer.cli.rollout import rollout_app
from fastinfer.cli.score import predict_command
from fastinfer.cli.serve import serve_command

app = typer.Typer(
    name="fastinfer",
    help="Turn a trained model into a fast, hardened inference microservice.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.command("serve")(serve_command)
app.command("predict")(predict_command)
app.command("models")(models_command)
app.command("init")(init_command)
app.command("build")(build_command)
app.command("new-key")(new_key_command)
app.command("hash-key")(hash_key_command)
app.add_typer(rollout_app, name="rollout")
app.command("config", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(
    config_command
)
app.command("loadtest")(loadtest_command)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fastinfer {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """fastinfer."""


def main() -> None:
    app()
