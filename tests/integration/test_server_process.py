"""A real `fastinfer serve` process over real HTTP, stopped with SIGTERM."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.conftest import CAR, TITANIC
from tests.integration.server import running_server

pytestmark = pytest.mark.slow


def test_serves_over_http_and_exits_cleanly_on_sigterm(
    tiny_dir: Path, examples_built: None, tmp_path: Path
) -> None:
    with running_server([str(tiny_dir), str(TITANIC), str(CAR)], tmp_path / "server.log") as server:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert client.get("/livez").json() == {"status": "alive"}
            names = [m["name"] for m in client.get("/v1/models").json()["models"]]
            assert names == ["car_evaluation", "tiny", "titanic"]  # sorted by name
            response = client.post(
                "/v1/models/tiny/predict",
                json={"inputs": [{"x": 7, "colour": 1}]},
                headers={"X-Request-ID": "it-req-1"},
            )
            assert response.status_code == 200
            assert response.headers["x-request-id"] == "it-req-1"
            assert response.json()["predictions"][0]["label"] == "high"
            bad = client.post("/v1/models/tiny/predict", json={"inputs": [{"x": 1, "colour": 9}]})
            assert bad.status_code == 422
            assert client.get("/docs").status_code == 200
        assert server.stop(signal.SIGTERM) == 0

    records = [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]
    access = [r for r in records if r.get("event") == "request"]
    ours = [r for r in access if r.get("request_id") == "it-req-1"]
    assert len(ours) == 1
    line = ours[0]
    assert line["model"] == "tiny" and line["version"] == "1" and line["status"] == 200
    assert line["latency_ms"] >= 0 and line["path"] == "/v1/models/tiny/predict"
    assert any(r.get("status") == 422 for r in access)
    assert "inputs" not in server.logs()  # request bodies are not logged by default
    assert any(r.get("event") == "stopped" for r in records)


def test_refuses_to_start_without_models(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "fastinfer", "serve"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "no models given" in result.stderr


def test_bare_artefact_needs_a_pin_or_an_explicit_opt_in(tiny_dir: Path, tmp_path: Path) -> None:
    artefact = tiny_dir / "model.joblib"
    with running_server(
        ["--model", f"bare={artefact}", "--trust-unpinned"], tmp_path / "trusted.log"
    ) as server:
        meta = httpx.get(f"{server.url}/v1/models/bare", timeout=10).json()
        assert [f["name"] for f in meta["inputs"]] == ["x", "colour"]
        response = httpx.post(
            f"{server.url}/v1/models/bare/predict",
            json={"inputs": [{"x": 7.0, "colour": 1}]},
            timeout=10,
        )
        assert response.json()["predictions"][0]["label"] == "high"
        assert server.stop() == 0
