"""Server-Timing on every prediction: where the request's time went."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from tests.conftest import build_scripted_model, serve_in_process, wait_ready

_METRIC = re.compile(r'([a-z-]+)(?:;dur=([0-9.]+))?(?:;desc="([^"]*)")?')


def timings(header: str) -> dict[str, float | str]:
    parsed: dict[str, float | str] = {}
    for part in header.split(", "):
        match = _METRIC.fullmatch(part)
        assert match is not None, part
        name, duration, description = match.groups()
        parsed[name] = float(duration) if duration is not None else description
    return parsed


def test_every_prediction_says_where_its_time_went(tmp_path: Path) -> None:
    directory = build_scripted_model(tmp_path / "scripted")
    with serve_in_process(directory) as client:
        wait_ready(client)
        response = client.post(
            "/v1/models/scripted/predict",
            json={"inputs": [{"x": 1, "sleep": 0.05}, {"x": 2}]},
        )
        assert response.status_code == 200
        parts = timings(response.headers["server-timing"])
        assert set(parts) == {"queue", "batch-wait", "infer", "dispatch", "encode", "batch"}
        assert 50 <= float(parts["infer"]) < 1000  # the model slept 50 ms
        assert parts["batch-wait"] == 0  # max_batch_delay_ms is 0: nothing held back
        assert parts["batch"] == "rows=2 requests=1"
        assert float(parts["encode"]) >= 0
        v2 = client.post(
            "/v2/models/scripted/infer",
            json={"inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": [3.0]}]},
        )
        assert v2.status_code == 200
        assert timings(v2.headers["server-timing"])["batch"] == "rows=1 requests=1"


def test_batch_wait_is_reported_apart_from_queueing(tmp_path: Path) -> None:
    directory = build_scripted_model(
        tmp_path / "scripted", batching={"max_batch_size": 64, "max_batch_delay_ms": 80}
    )
    with serve_in_process(directory) as client:
        wait_ready(client)
        response = client.post("/v1/models/scripted/predict", json={"inputs": [{"x": 1}]})
        parts = timings(response.headers["server-timing"])
        assert 60 <= float(parts["batch-wait"]) < 1000  # a free worker held on for more rows
        assert float(parts["queue"]) < 60


def test_cors_exposes_the_timing(tiny_dir: Path) -> None:
    with serve_in_process(tiny_dir, cors_origins=["https://app.example"]) as client:
        wait_ready(client)
        response = client.post(
            "/v1/models/tiny/predict",
            json={"inputs": [{"x": 1, "colour": 0}]},
            headers={"Origin": "https://app.example"},
        )
        assert "server-timing" in response.headers
        exposed = response.headers["access-control-expose-headers"].lower()
        assert "server-timing" in exposed and "x-model-version" in exposed


def test_failures_carry_no_timing(tiny_client: TestClient) -> None:
    response = tiny_client.post("/v1/models/tiny/predict", json={"inputs": [{"x": "a"}]})
    assert response.status_code == 422
    assert "server-timing" not in response.headers
