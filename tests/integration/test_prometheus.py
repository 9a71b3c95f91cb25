"""A real Prometheus (Debian's package) scraping a running fastinfer on loopback, and the shipped
rules checked by promtool."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
import yaml

from tests.conftest import REPO
from tests.integration.debian import require_tool
from tests.integration.server import free_port, running_server

pytestmark = pytest.mark.slow
RULES = REPO / "deploy" / "prometheus"


@pytest.fixture(scope="module")
def prometheus() -> str:
    """The prometheus binary, installed from Debian's registry if it is not there yet."""
    return require_tool("prometheus", "prometheus", needed_for="a real Prometheus scraping")


def test_shipped_rules_pass_promtool(prometheus: str) -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None
    checked = subprocess.run(
        [promtool, "test", "rules", "rules_test.yml"],
        cwd=RULES,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.fixture
def scraping(prometheus: str, tiny_dir: Path, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(fastinfer url, prometheus url): Prometheus scrapes fastinfer every second."""
    with running_server([str(tiny_dir), "--workers", "2"], tmp_path / "server.log") as server:
        port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES / "rules.yml")],
            "scrape_configs": [
                {
                    "job_name": "fastinfer",
                    "static_configs": [{"targets": [server.url.removeprefix("http://")]}],
                }
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        with (tmp_path / "prometheus.log").open("wb") as log:
            process = subprocess.Popen(
                [
                    prometheus,
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            yield server.url, f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(timeout=30)


def query(prometheus_url: str, promql: str) -> list[dict]:
    response = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": promql}, timeout=5)
    response.raise_for_status()
    result: list[dict] = response.json()["data"]["result"]
    return result


def wait_for(prometheus_url: str, promql: str, expected: float, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = query(prometheus_url, promql)
        except httpx.TransportError:
            result = []
        if result:
            last = float(result[0]["value"][1])
            if last == expected:
                return
        time.sleep(0.5)
    raise AssertionError(f"{promql} = {last}, expected {expected}")


def test_prometheus_counts_every_request(scraping: tuple[str, str]) -> None:
    fastinfer_url, prometheus_url = scraping
    sent = 25
    for _ in range(sent):  # fresh connections: both workers answer some
        response = httpx.post(
            f"{fastinfer_url}/v1/models/tiny/predict",
            json={"inputs": [{"x": 1, "colour": 0}]},
        )
        assert response.status_code == 200
    wait_for(prometheus_url, 'sum(fastinfer_requests_total{model="tiny",status="200"})', sent)
    wait_for(prometheus_url, "count(fastinfer_saturation)", 1)
    wait_for(prometheus_url, "fastinfer_capacity", 2)  # one per server process
    wait_for(prometheus_url, 'count(fastinfer_model_info{model="tiny",version="1"})', 1)
    wait_for(prometheus_url, "count(fastinfer:saturation:avg)", 1)  # the shipped rules load
    up = query(prometheus_url, 'up{job="fastinfer"}')
    assert [float(s["value"][1]) for s in up] == [1.0]
