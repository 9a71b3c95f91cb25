"""Metrics across worker processes: any worker's /metrics counts every worker's requests."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx2 as httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.server import free_port, running_server

pytestmark = pytest.mark.slow


def requests_total(text: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "fastinfer_requests_total" and sample.labels["model"] == "tiny":
                total += sample.value
    return total


def test_two_workers_report_one_sum(tiny_dir: Path, tmp_path: Path) -> None:
    health_port = free_port()
    args = [str(tiny_dir), "--workers", "2", "--health-port", str(health_port)]
    with running_server(args, tmp_path / "log") as server:
        pids = set()
        for _ in range(60):  # new connections: the kernel spreads them over both workers
            with httpx.Client(base_url=server.url) as client:
                response = client.post(
                    "/v1/models/tiny/predict", json={"inputs": [{"x": 1, "colour": 0}]}
                )
                assert response.status_code == 200
                pids.add(client.get("/health").json()["pid"])
        assert len(pids) == 2, "both workers should have answered"
        time.sleep(0.6)  # each worker folds its counts in 4 times a second
        for _ in range(6):  # whichever worker answers the scrape sees the same total
            with httpx.Client(base_url=server.url) as client:
                assert requests_total(client.get("/metrics").text) == 60
        on_health_port = httpx.get(f"http://127.0.0.1:{health_port}/metrics")
        assert on_health_port.headers["content-type"].startswith("text/plain")
        assert requests_total(on_health_port.text) == 60  # the health process sums them too
        logged = [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]
        shared = next(r for r in logged if r.get("event") == "shared_directories")
        directories = [Path(shared["metrics"]), Path(shared["run"])]
        assert all(d.is_dir() for d in directories)
        assert server.stop() == 0
    assert not any(d.exists() for d in directories)  # removed at exit
