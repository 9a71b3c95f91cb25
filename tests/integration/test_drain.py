"""Graceful drain with real processes: SIGTERM while requests are in flight and queued."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.conftest import build_scripted_model
from tests.integration.server import running_server

pytestmark = pytest.mark.slow
PATH = "/v1/models/scripted/predict"


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_answers_every_accepted_request_then_exits_0(tmp_path: Path, workers: int) -> None:
    model = build_scripted_model(tmp_path / "scripted", batching={"max_batch_size": 1})
    args = [str(model), "--workers", str(workers)]
    env = {"FASTINFER_DRAIN_DELAY_S": "1.0", "FASTINFER_DRAIN_TIMEOUT_S": "20"}
    with running_server(args, tmp_path / "server.log", env=env) as server:
        clients = [httpx.Client(base_url=server.url, timeout=30) for _ in range(12)]
        with ThreadPoolExecutor(12) as pool:
            # 12 requests of 0.4 s each, one row per batch: they run and queue for ~2.4-4.8 s.
            futures = [
                pool.submit(c.post, PATH, json={"inputs": [{"x": i % 10, "sleep": 0.4}]})
                for i, c in enumerate(clients)
            ]
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # wait until every request has been accepted
                health = httpx.get(f"{server.url}/health", timeout=2).json()
                engine = health["engine"]["scripted/1"]
                if workers == 1 and engine["queued_requests"] + engine["running_requests"] == 12:
                    break
                if workers > 1 and sum(f.running() for f in futures) == 12:
                    time.sleep(0.3)
                    break
                time.sleep(0.02)
            server.process.send_signal(signal.SIGTERM)
            time.sleep(0.2)
            ready = httpx.get(f"{server.url}/readyz", timeout=2)  # within the drain delay
            assert ready.status_code == 503
            assert "draining" in ready.text
            assert httpx.get(f"{server.url}/livez", timeout=2).status_code == 200
            responses = [f.result(timeout=30) for f in futures]
        for client in clients:
            client.close()
        assert [r.status_code for r in responses] == [200] * 12
        assert server.process.wait(timeout=30) == 0
    logs = server.logs()
    assert "draining" in logs


def test_new_connections_are_refused_after_the_drain_delay(tmp_path: Path) -> None:
    model = build_scripted_model(tmp_path / "scripted")
    with running_server([str(model), "--workers", "2"], tmp_path / "server.log") as server:
        busy = ThreadPoolExecutor(1).submit(
            httpx.post, f"{server.url}{PATH}", json={"inputs": [{"x": 1, "sleep": 1.0}]}, timeout=30
        )
        time.sleep(0.3)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{server.url}/readyz", timeout=1)
        assert busy.result(timeout=30).status_code == 200
        assert server.process.wait(timeout=30) == 0
