"""The `fastinfer` command: local scoring and model inspection."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from typer.testing import CliRunner

from fastinfer.cli import app

runner = CliRunner()


def test_predict_scores_a_csv_file_with_missing_cells_and_bad_rows(
    tiny_dir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "rows.csv"
    source.write_text("x,colour\n7,1\n0,0\n,1\n3,9\n")
    result = runner.invoke(app, ["predict", str(tiny_dir), str(source), "--no-progress"])
    assert result.exit_code == 1  # two rows are invalid; the others are still scored
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["row"] for r in records] == [0, 1, 2, 3]
    assert records[0]["label"] == "high" and records[1]["label"] == "low"
    assert records[2]["error"][0]["field"] == "x"
    assert records[2]["error"][0]["problem"] == "must be a valid number"  # empty = missing
    assert records[3]["error"][0]["problem"] == "must be one of 0 or 1"
    assert "scored 2 of 4 rows" in result.stderr


def test_predict_reads_json_and_writes_csv(tiny_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "rows.json"
    source.write_text(json.dumps({"inputs": [{"x": 7, "colour": 1}] * 3000}))
    out = tmp_path / "out.csv"
    result = runner.invoke(app, ["predict", str(tiny_dir), str(source), "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3000
    assert rows[0]["label"] == "high"
    assert {"row", "label", "p_high", "p_low"} <= set(rows[0])


def test_predict_equals_the_server(tiny_dir: Path, tmp_path: Path) -> None:
    from tests.conftest import serve_in_process, wait_ready

    rows = [{"x": float(x) / 2, "colour": x % 2} for x in range(20)]
    source = tmp_path / "rows.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in rows))
    result = runner.invoke(app, ["predict", str(tiny_dir), str(source)])
    local = [json.loads(line) for line in result.stdout.splitlines()]
    with serve_in_process(tiny_dir) as client:
        wait_ready(client)
        served = client.post("/v1/models/tiny/predict", json={"inputs": rows}).json()
    assert [{k: v for k, v in r.items() if k != "row"} for r in local] == served["predictions"]


def test_predict_refuses_a_tampered_artefact(tiny_dir: Path, tmp_path: Path) -> None:
    with (tiny_dir / "model.joblib").open("ab") as handle:
        handle.write(b"x")
    source = tmp_path / "rows.json"
    source.write_text("[]")
    result = runner.invoke(app, ["predict", str(tiny_dir), str(source)])
    assert result.exit_code == 2
    assert "sha256 mismatch" in result.stderr


def test_models_lists_and_checks_pins(tiny_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["models", str(tiny_dir)])
    assert result.exit_code == 0
    assert "tiny" in result.stdout and "ok" in result.stdout
    with (tiny_dir / "model.joblib").open("ab") as handle:
        handle.write(b"x")
    result = runner.invoke(app, ["models", str(tiny_dir), str(tmp_path / "missing")])
    assert result.exit_code == 1
    assert "MISMATCH" in result.stdout and "invalid" in result.stdout


def test_serve_help_documents_the_environment() -> None:
    result = runner.invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    for variable in (
        "FASTINFER_HOST",
        "FASTINFER_PORT",
        "FASTINFER_MAX_ROWS",
        "FASTINFER_LOG_FORMAT",
    ):
        assert variable in result.stdout
