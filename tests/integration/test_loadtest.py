"""`fastinfer loadtest` against a real `fastinfer serve` on loopback: a short sweep."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fastinfer.cli import app
from tests.conftest import TITANIC
from tests.integration.server import running_server


@pytest.mark.slow
def test_a_short_sweep_reports_throughput_latency_and_server_timing(
    examples_built: None, tmp_path: Path
) -> None:
    out, plot = tmp_path / "loadtest.json", tmp_path / "loadtest.png"
    files = ["--json", str(out), "--plot", str(plot)]
    with running_server([str(TITANIC), "--workers", "1"], tmp_path / "log") as server:
        result = CliRunner().invoke(
            app,
            [
                "loadtest",
                server.url,
                "--model",
                "titanic",
                "-c",
                "1,4",
                "-d",
                "1",
                "--rows",
                "2",
                *files,
            ],
        )
    assert result.exit_code == 0, result.output
    assert "req/s" in result.stdout and "p99 ms" in result.stdout and "infer ms" in result.stdout
    report = json.loads(out.read_text())
    assert report["path"] == "/v1/models/titanic/predict" and report["rows_per_request"] == 2
    assert [level["concurrency"] for level in report["levels"]] == [1, 4]
    for level in report["levels"]:
        assert level["requests"] > 10 and level["ok"] == level["requests"]
        assert level["errors"]["total"] == 0 and level["reconnects"] == 0
        assert level["rows_per_s"] == pytest.approx(2 * level["req_per_s"], rel=0.01)
        latency = level["latency_ms"]
        assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"] < 5000
        timing = level["server_timing_ms"]
        assert {"queue", "batch-wait", "infer"} <= set(timing)
        assert level["server_timing_samples"] == level["ok"]
        assert 0 < timing["infer"] < latency["max"]
        assert level["model_versions"] == {"1.0.0": level["ok"]}
    if importlib.util.find_spec("matplotlib") is not None:
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
