"""`fastinfer build`: an image with the given models baked in, built with podman or docker."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Annotated

import typer

import fastinfer
from fastinfer.scaffold.image import DEFAULT_BASE_IMAGE, ImageError, project_root, write_context

ENGINES = ("podman", "docker")


def _engine(name: str | None) -> str:
    """The named engine, or the first of podman, docker on PATH."""
    for candidate in (name,) if name else ENGINES:
        if candidate and shutil.which(candidate):
            return candidate
    wanted = name or " or ".join(ENGINES)
    raise ImageError(f"{wanted} is not installed (not on PATH): install one or pass --engine")


def _revision(project: Path) -> str:
    """The checkout's commit, for the image's revision label; `unknown` outside git."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],  # noqa: S607 - git from PATH on purpose
            cwd=project,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return result.stdout.strip() or "unknown"


def build_command(
    model_dirs: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Model directories (each with a pinned model.yaml).",
            metavar="MODEL_DIR...",
            show_default=False,
        ),
    ] = None,
    tag: Annotated[
        str,
        typer.Option("--tag", "-t", help="The image's name, e.g. registry.example/churn:1."),
    ] = "fastinfer-models:latest",
    repository: Annotated[
        Path | None,
        typer.Option(
            "--repository",
            help="Bake in a whole model repository (NAME/VERSION/model.yaml folders); the image "
            "serves it with --repository.",
            show_default=False,
        ),
    ] = None,
    engine: Annotated[
        str | None,
        typer.Option(
            help="podman or docker [default: whichever is on PATH, podman first].",
            show_default=False,
        ),
    ] = None,
    base_image: Annotated[
        str, typer.Option(help="A Debian-like image with python3 (3.11+) and its venv module.")
    ] = DEFAULT_BASE_IMAGE,
    offline_wheels: Annotated[
        list[Path] | None,
        typer.Option(
            "--offline-wheels",
            help="A directory of wheels to install from, with no package index (the build "
            "needs every locked wheel there). Repeatable.",
            show_default=False,
        ),
    ] = None,
    context: Annotated[
        Path | None,
        typer.Option(
            help="Write the build context here (an empty or new directory) and keep it "
            "[default: a temporary directory, removed after the build].",
            show_default=False,
        ),
    ] = None,
    project: Annotated[
        Path | None,
        typer.Option(
            help="The fastinfer checkout to install (pyproject.toml, src/, requirements/) "
            "[default: the one this fastinfer runs from, else the current directory's].",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Write the context and print the build command only."),
    ] = False,
) -> None:
    """Build an image serving MODEL_DIR... (or --repository DIR), from deploy/Dockerfile's
    hardened recipe, with the runtime extras the models need and nothing else.

    Every artefact must be pinned (sha256 in its model.yaml) and match its pin. Exits 2 if the
    models or the project cannot become an image, else with the engine's exit status.
    """
    try:
        checkout = project or _default_project()
        chosen = engine if dry_run and engine else _engine(engine)
        keep = context is not None or dry_run
        directory = context or Path(tempfile.mkdtemp(prefix="fastinfer-build-"))
        try:
            written = write_context(
                directory,
                models=model_dirs or (),
                repository=repository,
                project=checkout,
                base_image=base_image,
                offline_wheels=offline_wheels or (),
                revision=_revision(checkout),
            )
            command = written.command(chosen, tag)
            names = ", ".join(f"{m.name} {m.version}" for m in written.models)
            typer.echo(f"models: {names} (pins verified)")
            typer.echo(f"runtime extras: {', '.join(written.packages) or 'none'}")
            typer.echo(f"context: {directory}")
            typer.echo(shlex.join(command))
            if dry_run:
                return
            result = subprocess.run(command, check=False)  # noqa: S603 - an argument list
        finally:
            if not keep:
                shutil.rmtree(directory, ignore_errors=True)
    except ImageError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None
    if result.returncode != 0:
        typer.secho(f"error: {chosen} build exited {result.returncode}", err=True, fg="red")
        raise typer.Exit(result.returncode)
    typer.echo(f"built {tag}")


def _default_project() -> Path:
    """The checkout this fastinfer runs from (src layout), else one at or above the cwd."""
    installed = Path(fastinfer.__file__).resolve().parents[2]
    try:
        return project_root(installed)
    except ImageError:
        return project_root(Path.cwd())
