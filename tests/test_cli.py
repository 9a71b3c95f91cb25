"""The `fastinfer` command: local scoring and model inspection."""

from __future__ import annotations

import csv
import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fastinfer.cli import app
from tests.conftest import sha256_of

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


def _holdout_without_outcome() -> Any:
    import pandas as pd

    from tests.conftest import TITANIC

    return pd.read_csv(TITANIC / "holdout.csv").drop(columns="Survived")


def test_predict_refuses_unknown_columns_as_the_server_does(
    examples_built: None, tmp_path: Path
) -> None:
    """A header `age` for `Age` scored every row with Age missing and exit 0 (issue 13)."""
    from tests.conftest import TITANIC

    source = tmp_path / "renamed.csv"
    _holdout_without_outcome().head(3).rename(columns={"Age": "age"}).to_csv(source, index=False)
    refused = runner.invoke(app, ["predict", str(TITANIC), str(source), "--no-progress"])
    assert refused.exit_code == 2
    assert "no input named 'age' (did you mean 'Age'?)" in " ".join(refused.stderr.split())
    dropped = runner.invoke(
        app, ["predict", str(TITANIC), str(source), "--no-progress", "--ignore-extra"]
    )
    assert dropped.exit_code == 0, dropped.stderr
    assert len(dropped.stdout.splitlines()) == 3


def test_predict_on_the_titanic_holdout_equals_the_server(
    examples_built: None, tmp_path: Path
) -> None:
    """Every one of the 418 holdout rows (missing ages, cabins...) scores as the server does."""
    from tests.conftest import TITANIC, serve_in_process, wait_ready

    frame = _holdout_without_outcome()
    source = tmp_path / "holdout.csv"
    frame.to_csv(source, index=False)
    result = runner.invoke(app, ["predict", str(TITANIC), str(source), "--no-progress"])
    assert result.exit_code == 0, result.stderr
    local = [json.loads(line) for line in result.stdout.splitlines()]
    # NaN → null, as a JSON client sends; the holdout has at most 10 significant digits, which
    # to_json keeps (its default double_precision).
    rows = json.loads(frame.to_json(orient="records"))
    with serve_in_process(TITANIC, max_rows=1000) as client:
        wait_ready(client)
        served = client.post("/v1/models/titanic/predict", json={"inputs": rows}).json()
    assert len(local) == len(rows) == 418
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


def test_serve_help_is_its_options_short_and_points_to_the_settings() -> None:
    """It listed 50 environment variables before the options (~170 lines; issue 16)."""
    result = runner.invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert len(lines) < 70
    assert "--port" in result.stdout and "--allow-no-models" in result.stdout
    assert "FASTINFER_PORT" not in result.stdout and "FASTINFER_MAX_ROWS" not in result.stdout
    assert "fastinfer config" in result.stdout and "docs/configuration.md" in result.stdout


def test_configuration_doc_lists_every_setting() -> None:
    from fastinfer.config import Settings
    from fastinfer.config.explain import variable_name
    from tests.conftest import REPO

    doc = (REPO / "docs" / "configuration.md").read_text()
    missing = [
        variable_name(f) for f in Settings.model_fields if f"`{variable_name(f)}`" not in doc
    ]
    assert missing == []


def test_config_shows_the_effective_settings_and_where_each_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("FASTINFER_MAX_ROWS=5\nFASTINFER_WORKERS=9\n")
    result = runner.invoke(
        app,
        ["config", "--port", "9000", "--log-level", "debug"],
        env={"FASTINFER_WORKERS": "3", "FASTINFER_ADMIN_TOKEN": "s3cret-token"},
    )
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()}
    assert rows["FASTINFER_PORT"] == ["9000", "option", "--port"]
    assert rows["FASTINFER_LOG_LEVEL"] == ["debug", "option", "--log-level"]
    assert rows["FASTINFER_WORKERS"] == ["3", "environment"]  # the environment beats .env
    assert rows["FASTINFER_MAX_ROWS"] == ["5", ".env"]
    assert rows["FASTINFER_HOST"] == ["127.0.0.1", "default"]
    assert rows["FASTINFER_ADMIN_TOKEN"] == ["(set)", "environment"]
    assert "s3cret" not in result.stdout
    bad = runner.invoke(app, ["config"], env={"FASTINFER_WORKERS": "two"})
    assert bad.exit_code == 2
    assert bad.stderr.strip() == "error: FASTINFER_WORKERS: must be a whole number (got 'two')"


def test_version_and_shell_completion() -> None:
    from fastinfer import __version__

    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0 and version.stdout.strip() == f"fastinfer {__version__}"
    completion = runner.invoke(app, ["--show-completion", "bash"])
    assert completion.exit_code == 0 and "_FASTINFER_COMPLETE" in completion.stdout


# --- serve --model NAME=PATH[#sha256:HEX]: one-line errors, before anything is served ---------


def _never_served(*_args: object) -> int:
    raise AssertionError("the --model option was accepted and the server started")


def _serve_refusal(monkeypatch: pytest.MonkeyPatch, option: str) -> str:
    """`fastinfer serve --model OPTION` must exit 2 with one line on stderr, no traceback."""
    monkeypatch.setattr("fastinfer.cli.serve.serve", _never_served)
    result = runner.invoke(app, ["serve", "--model", option])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: --model ")
    return line


def test_serve_model_option_errors_are_one_line(
    tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    artefact = tiny_dir / "model.joblib"
    for option, message in [
        (f"Bad Name={artefact}", "'Bad Name' is not a valid model name: use lowercase letters"),
        (f"-x={artefact}", "'-x' is not a valid model name"),
        (
            f"m={artefact}#sha256:abc",
            "the pin must be #sha256: and 64 hexadecimal characters "
            "(got 'sha256:abc', 3 characters after the colon)",
        ),
        (f"m={artefact}#sha256:{'g' * 64}", "the pin must be #sha256:"),
        (f"m={artefact}#md5:{'0' * 64}", "the pin must be #sha256:"),
        (f"m={tmp_path / 'missing.joblib'}", "no such file"),
        (f"m={tmp_path}", "no such file"),
        ("m", "expected NAME=PATH or NAME=PATH#sha256:HEX"),
    ]:
        assert message in _serve_refusal(monkeypatch, option), option


def test_serve_refuses_a_pinned_pickle_named_onnx_without_loading_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.unit.test_registry_bare import Marker

    marker = tmp_path / "ran"
    evil = tmp_path / "evil.onnx"
    evil.write_bytes(pickle.dumps(Marker(marker)))
    line = _serve_refusal(monkeypatch, f"evil={evil}#sha256:{sha256_of(evil)}")
    assert "evil.onnx is not an ONNX model" in line and "It was not loaded" in line
    assert not marker.exists()


def test_serve_refuses_an_unknown_extension(
    tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    renamed = tmp_path / "model.bin"
    renamed.write_bytes((tiny_dir / "model.joblib").read_bytes())
    line = _serve_refusal(monkeypatch, f"m={renamed}#sha256:{sha256_of(renamed)}")
    assert "cannot tell the runtime from the extension '.bin'" in line


# --- settings mistakes: one line each, named as written, typos with a suggestion (issue 16) ---


def test_serve_settings_mistakes_are_one_line_each(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("fastinfer.cli.serve.serve", _never_served)
    result = runner.invoke(
        app, ["serve", "--version-policy", "newest"], env={"FASTINFER_WORKERS": "two"}
    )
    assert result.exit_code == 2, result.output
    assert "pydantic" not in result.output and "Traceback" not in result.output
    assert result.stderr.strip().splitlines() == [
        "error: --version-policy: must be all, latest or latest:N (got 'newest')",
        "error: FASTINFER_WORKERS: must be a whole number (got 'two')",
    ]


def test_serve_settings_errors_name_nested_fields_and_hide_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("fastinfer.cli.serve.serve", _never_served)
    keys = json.dumps([{"name": "a", "sha256": "x"}])
    result = runner.invoke(app, ["serve"], env={"FASTINFER_API_KEYS": keys})
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: FASTINFER_API_KEYS[0].sha256: must match " + (
        "^[0-9a-f]{64}$ (got 'x')"
    )
    result = runner.invoke(app, ["serve"], env={"FASTINFER_API_KEYS": "[{"})
    assert result.stderr.startswith("error: FASTINFER_API_KEYS: must be JSON")
    result = runner.invoke(app, ["serve"], env={"FASTINFER_DRAIN_TIMEOUT_S": "-1"})
    assert (
        result.stderr.strip() == "error: FASTINFER_DRAIN_TIMEOUT_S: must be at least 0.0 (got '-1')"
    )


def test_serve_suggests_the_closest_setting_for_an_unknown_variable() -> None:
    result = runner.invoke(
        app,
        ["serve"],  # no models: refused after the settings are read
        env={
            "FASTINFER_WROKERS": "2",
            "FASTINFER_NOTHING_LIKE_IT": "1",
            "FASTINFER_SERVICE_HOST": "x",
        },
    )
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert lines[:2] == [
        "warning: FASTINFER_NOTHING_LIKE_IT is not a fastinfer setting and is ignored "
        "(docs/configuration.md lists them)",
        "warning: FASTINFER_WROKERS is not a fastinfer setting and is ignored; "
        "did you mean FASTINFER_WORKERS?",
    ]
    assert not any("SERVICE_HOST" in line for line in lines)  # a Kubernetes service link
