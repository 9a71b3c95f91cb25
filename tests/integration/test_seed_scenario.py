"""The seed scenario: a model whose predict takes a second, 32 predictions kept in flight for
about 10 s, `/livez` polled every 100 ms with a 1 s timeout. fastinfer must not fail a single
probe; the naive FastAPI service is put through the same helper to show where it breaks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.conftest import REPO, build_scripted_model
from tests.integration.load import ProbeReport, probe_under_load
from tests.integration.server import free_port, running_server

pytestmark = pytest.mark.slow

SLEEPS = {"inputs": [{"x": 7, "sleep": 1.0}]}  # I/O-like: releases the GIL for 1 s
SPINS = {"inputs": [{"x": 7, "spin": 1.0}]}  # CPU-bound: holds the GIL for 1 s
PATH = "/v1/models/scripted/predict"


@contextmanager
def naive_server(model_dir: Path, log_path: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "NAIVE_MODEL_DIR": str(model_dir), "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "uvicorn", "tests.integration.naive_app:app"]
    command += [
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--log-level",
        "error",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/livez", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def describe(report: ProbeReport) -> str:
    return (
        f"{report.probes} probes, {len(report.probe_failures)} failed "
        f"(worst {report.worst_probe:.3f}s), {report.predictions_ok} predictions ok, "
        f"{len(report.prediction_errors)} errors: {report.probe_failures[:5]}"
    )


@pytest.fixture(scope="module")
def scripted_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_scripted_model(tmp_path_factory.mktemp("seed") / "scripted")


@pytest.mark.parametrize("body", [SLEEPS, SPINS], ids=["sleeping-predict", "cpu-bound-predict"])
def test_fastinfer_never_fails_a_probe(scripted_dir: Path, tmp_path: Path, body: dict) -> None:
    with running_server([str(scripted_dir), "--workers", "2"], tmp_path / "server.log") as server:
        report = probe_under_load(server.url, PATH, body, concurrency=32, duration=10)
        assert server.stop() == 0
    assert report.probes >= 80, describe(report)
    assert report.probe_failures == [], describe(report)
    assert report.prediction_errors == [], describe(report)
    assert report.predictions_ok >= 32, describe(report)


def test_naive_fastapi_fails_where_fastinfer_holds(scripted_dir: Path, tmp_path: Path) -> None:
    with naive_server(scripted_dir, tmp_path / "naive.log") as url:
        cpu_bound = probe_under_load(url, PATH, SPINS, concurrency=32, duration=10)
        pool_exhausted = probe_under_load(url, PATH, SLEEPS, concurrency=128, duration=6)
    # A CPU-bound predict in 32 pool threads starves the probe of the GIL...
    assert cpu_bound.probe_failures, describe(cpu_bound)
    # ...and more requests in flight than the pool's 40 threads queue the probe behind them.
    assert pool_exhausted.probe_failures, describe(pool_exhausted)
    print(f"naive, cpu-bound predict: {describe(cpu_bound)}")
    print(f"naive, 128 in flight: {describe(pool_exhausted)}")
