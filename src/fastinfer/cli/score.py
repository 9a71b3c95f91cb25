"""`fastinfer predict`: score a file locally with a model directory, no server needed."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from fastinfer.model.spec import ModelConfigError, load_model_directory
from fastinfer.observability.logging import configure_logging
from fastinfer.repository.local import (
    ModelLoadError,
    load_local,
    read_rows,
    score_rows,
    write_records,
)

_CHUNK = 1024


def predict_command(
    model_dir: Annotated[Path, typer.Argument(help="The model directory (holds model.yaml).")],
    input_file: Annotated[
        Path, typer.Argument(help="Rows to score: .csv, .json (list or {inputs}) or .jsonl.")
    ],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write here instead of stdout.", show_default=False),
    ] = None,
    output_format: Annotated[
        str | None,
        typer.Option("--format", "-f", help="jsonl, json or csv [default: from -o, else jsonl]."),
    ] = None,
    trust_unpinned: Annotated[
        bool, typer.Option("--trust-unpinned", help="Load an artefact with no sha256 pin.")
    ] = False,
    ignore_extra: Annotated[
        bool,
        typer.Option(
            "--ignore-extra",
            help="Drop CSV columns the model has no input for (default: refuse them, as the "
            "server refuses unknown fields).",
        ),
    ] = False,
    progress: Annotated[
        bool | None,
        typer.Option("--progress/--no-progress", help="Progress bar [default: on a terminal]."),
    ] = None,
) -> None:
    """Score FILE with the model in MODEL_DIR; rows that fail validation are reported, not fatal.

    Exits 1 if any row was invalid (the other rows are still scored and written).

    \f
    Long only by its options, which typer reads from the signature; the body stays short.
    """
    configure_logging("warning", "console")
    fmt = output_format or (output.suffix.lstrip(".").lower() if output else "jsonl")
    if fmt not in {"jsonl", "json", "csv"}:
        raise typer.BadParameter(f"unknown format {fmt!r}: use jsonl, json or csv")
    try:
        model = load_local(load_model_directory(model_dir), trust_unpinned=trust_unpinned)
    except (ModelConfigError, ModelLoadError) as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None
    assert model.schema is not None
    try:
        rows = list(
            read_rows(
                input_file,
                model.schema.fields,
                allow_extra=model.schema.allow_extra,
                ignore_extra=ignore_extra,
            )
        )
    except (OSError, ValueError) as exc:
        typer.secho(f"error: {input_file}: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None

    show = sys.stderr.isatty() if progress is None else progress
    records: list[dict[str, Any]] = []
    with Progress(
        TextColumn("[bold]scoring"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not show,
        transient=True,
    ) as bar:
        task = bar.add_task("rows", total=len(rows))
        for start in range(0, len(rows), _CHUNK):
            chunk = rows[start : start + _CHUNK]
            records.extend(score_rows(model, chunk, row_offset=start))
            bar.advance(task, len(chunk))

    if output is None:
        write_records(records, fmt, sys.stdout)  # type: ignore[arg-type]
    else:
        with output.open("w", encoding="utf-8", newline="") as handle:
            write_records(records, fmt, handle)
    failed = sum(1 for r in records if "error" in r)
    typer.secho(
        f"scored {len(records) - failed} of {len(records)} rows with {model.name} "
        f"{model.version}" + (f"; {failed} invalid" if failed else ""),
        err=True,
        fg=typer.colors.YELLOW if failed else typer.colors.GREEN,
    )
    if failed:
        raise typer.Exit(1)
