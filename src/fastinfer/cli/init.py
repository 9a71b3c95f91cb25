"""`fastinfer init`: a model directory from a trained artefact (and a sample of its data)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from fastinfer.model.spec import InputField
from fastinfer.observability.logging import configure_logging
from fastinfer.scaffold.build import KINDS, ScaffoldError, ScaffoldResult, scaffold

_SHOWN_ALLOWED = 6


def init_command(
    artefact: Annotated[
        Path,
        typer.Argument(
            help="The trained model file: .joblib/.pkl/.skops (sklearn), .onnx, .json/.ubj "
            "(xgboost), .txt/.lgb (lightgbm), .pt (torchscript).",
            metavar="ARTEFACT",
            show_default=False,
        ),
    ],
    sample: Annotated[
        Path | None,
        typer.Option(
            "--sample",
            "-s",
            help="Rows of the data (.csv or .parquet): column types, categories, an example "
            "row and reference statistics for drift checks.",
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            help="Model name [default: from the artefact's file name].", show_default=False
        ),
    ] = None,
    version: Annotated[str, typer.Option(help="Model version.")] = "1",
    runtime: Annotated[
        str | None,
        typer.Option(
            help="Runtime [default: from the artefact's extension; the content must match].",
            show_default=False,
        ),
    ] = None,
    kind: Annotated[
        str | None,
        typer.Option(
            help=f"Output kind: {', '.join(KINDS)} [default: what the model supports].",
            show_default=False,
        ),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(help="The sample's label column, left out of the inputs.", show_default=False),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Where to write the model directory [default: models/NAME/VERSION].",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite an existing model directory.")
    ] = False,
    trust_type: Annotated[
        list[str] | None,
        typer.Option(
            "--trust-type",
            help="A type the skops file may hold beyond those skops trusts (the load error names "
            "them), e.g. mypkg.features.Binner; written to model.yaml as trusted_types. "
            "Repeatable. Only for types you trust: building them runs their code.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Write a model directory (artefact copy, pinned model.yaml, reference.json) for ARTEFACT.

    The artefact is loaded to read its inputs (a pickle runs code when loaded: only use files you
    trust). The directory is loaded and self-tested as `fastinfer serve` would before it is put in
    place. Exits 2 if it cannot be built.

    \f
    Long only by its options, which typer reads from the signature; the body stays short.
    """
    configure_logging("critical", "console")  # init reports load failures itself, once
    try:
        result = scaffold(
            artefact,
            sample=sample,
            name=name,
            version=version,
            runtime=runtime,
            kind=kind,
            target=target,
            output=output,
            force=force,
            trust_types=trust_type or (),
        )
    except ScaffoldError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None
    _print_summary(result)


def _print_summary(result: ScaffoldResult) -> None:
    config = result.config
    console = Console()
    table = Table(title=f"{config.name} {config.version}: inputs")
    for column in ("field", "type", "nullable", "allowed", "from"):
        table.add_column(column)
    for field in config.inputs or []:
        cells = (
            field.name,
            _type(field),
            "yes" if field.nullable else "",
            _allowed(field),
            result.sources.get(field.name, ""),
        )
        table.add_row(*(Text(cell) for cell in cells))  # Text: names are not rich markup
    console.print(table)
    expected = config.expected_example_output
    facts = [
        ("runtime", f"{config.runtime} ({config.output.kind})"),
        ("sample", f"{result.sample_rows} rows" if result.sample_rows is not None else "none"),
        ("example", _example(result)),
        ("expected output", repr(expected) if expected is not None else "not set"),
        ("self-test", result.self_test),
        ("wrote", f"{result.directory}/ ({', '.join(result.files)})"),
    ]
    for label, value in facts:
        console.print(Text.assemble((f"{label:>16}: ", "bold"), value), soft_wrap=True)
    for warning in result.warnings:
        console.print(Text(f"warning: {warning}", style="yellow"), soft_wrap=True)
    console.print(
        Text.assemble(
            "\nserve it with: ", ("fastinfer serve " + str(result.directory), "bold green")
        ),
        soft_wrap=True,  # a command to copy: never broken across lines
    )


def _example(result: ScaffoldResult) -> str:
    if result.config.example is not None:
        return "the first complete sample row"
    if result.sample_rows is None:
        return "none (pass --sample to get one)"
    return "none (no sample row has every field present and allowed)"


def _type(field: InputField) -> str:
    if field.shape is not None:
        return f"{field.type}[{','.join(map(str, field.shape))}]"
    return field.type


def _allowed(field: InputField) -> str:
    if field.allowed is None:
        return ""
    shown = ", ".join(map(str, field.allowed[:_SHOWN_ALLOWED]))
    more = len(field.allowed) - _SHOWN_ALLOWED
    return shown + (f" (+{more})" if more > 0 else "")
