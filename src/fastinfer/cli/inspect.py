"""`fastinfer models`: what is in model directories, and whether their artefacts match the pins."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from fastinfer.model.integrity import sha256_file
from fastinfer.model.spec import ModelConfigError, load_model_directory


def models_command(
    model_dirs: Annotated[list[Path], typer.Argument(help="Model directories to inspect.")],
) -> None:
    """List models: name, version, runtime, inputs, and whether the artefact matches its pin.

    Exits 1 if any directory is invalid or any artefact is missing or does not match.
    """
    table = Table(title="models")
    for column in ("name", "version", "runtime", "inputs", "artefact", "sha256"):
        table.add_column(column)
    bad = 0
    for path in model_dirs:
        try:
            directory = load_model_directory(path)
        except ModelConfigError as exc:
            table.add_row(str(path), "-", "-", "-", "-", f"[red]invalid: {exc}")
            bad += 1
            continue
        config = directory.config
        artefact = directory.artefact_path
        if artefact is None or config.artefact is None:
            status = "[green]code (no artefact)"
        elif not artefact.is_file():
            status = "[red]missing"
            bad += 1
        elif config.artefact.sha256 is None:
            status = "[yellow]not pinned"
        elif sha256_file(artefact) == config.artefact.sha256:
            status = f"[green]ok {config.artefact.sha256[:12]}"
        else:
            status = "[red]MISMATCH"
            bad += 1
        inputs = str(len(config.inputs)) if config.inputs is not None else "from artefact"
        table.add_row(
            config.name, config.version, config.runtime, inputs, str(artefact or "-"), status
        )
    Console().print(table)
    if bad:
        raise typer.Exit(1)
