"""The health port: probes answered by a separate process from every worker's heartbeat."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.conftest import build_tiny_model
from tests.integration.server import children, free_port, running_server, smaps_kb, wait_until

pytestmark = pytest.mark.slow


def test_health_port_sees_every_worker(tmp_path: Path) -> None:
    model = build_tiny_model(tmp_path / "tiny")
    port = free_port()
    health = f"http://127.0.0.1:{port}"
    args = [str(model), "--workers", "2", "--health-port", str(port)]
    env = {"FASTINFER_LOOP_BLOCK_S": "1"}
    with running_server(args, tmp_path / "server.log", env=env) as server:
        wait_until(lambda: httpx.get(f"{health}/readyz", timeout=1).status_code == 200)
        assert httpx.get(f"{health}/livez", timeout=1).json() == {"status": "alive"}
        workers = httpx.get(f"{health}/health", timeout=1).json()["alive"]["workers"]
        pids = sorted(w["pid"] for w in workers.values())
        assert len(pids) == 2

        # A worker whose event loop stops running is caught, whichever process a probe reaches.
        os.kill(pids[0], signal.SIGSTOP)
        try:
            wait_until(lambda: httpx.get(f"{health}/livez", timeout=1).status_code == 503, 10)
            body = httpx.get(f"{health}/livez", timeout=1).json()
            assert body["code"] == "stalled" and "event loop blocked" in body["message"]
        finally:
            os.kill(pids[0], signal.SIGCONT)
        wait_until(lambda: httpx.get(f"{health}/livez", timeout=1).status_code == 200, 10)

        # A worker that dies is replaced; readiness comes back with the new one.
        os.kill(pids[1], signal.SIGKILL)
        wait_until(
            lambda: (
                sorted(
                    w["pid"]
                    for w in httpx.get(f"{health}/health", timeout=1)
                    .json()["alive"]["workers"]
                    .values()
                )
                not in (pids, [pids[0]])
            ),
            20,
        )
        wait_until(lambda: httpx.get(f"{health}/readyz", timeout=1).status_code == 200)
        response = httpx.post(
            f"{server.url}/v1/models/tiny/predict", json={"inputs": [{"x": 7, "colour": 1}]}
        )
        assert response.status_code == 200
        assert server.stop() == 0
    assert "worker_died" in server.logs()


def test_health_port_with_one_worker_stops_cleanly(tmp_path: Path) -> None:
    model = build_tiny_model(tmp_path / "tiny")
    port = free_port()
    health = f"http://127.0.0.1:{port}"
    args = [str(model), "--workers", "1", "--health-port", str(port)]
    with running_server(args, tmp_path / "server.log") as server:
        wait_until(lambda: httpx.get(f"{health}/readyz", timeout=1).status_code == 200)
        assert httpx.get(f"{health}/nope", timeout=1).status_code == 404
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=30) == 0
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{health}/readyz", timeout=1)


def _two_free_ports() -> int:
    """A port whose next one is free too (the default health port is the serving port + 1)."""
    for _ in range(50):
        port = free_port()
        try:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise AssertionError("no two adjacent free ports")


def test_the_health_process_runs_by_default_on_the_next_port(tmp_path: Path) -> None:
    """`fastinfer serve` with no health options: probes on --port + 1, from every worker's
    heartbeat (the pids of the server processes, none of them the health process's)."""
    model = build_tiny_model(tmp_path / "tiny")
    port = _two_free_ports()
    with running_server(
        [str(model), "--workers", "1"], tmp_path / "server.log", port=port
    ) as server:
        assert server.health_url == f"http://127.0.0.1:{port + 1}"
        wait_until(lambda: httpx.get(f"{server.health_url}/readyz", timeout=1).status_code == 200)
        workers = httpx.get(f"{server.health_url}/health", timeout=1).json()["alive"]["workers"]
        served_by = httpx.get(f"{server.url}/health").json()["pid"]
        assert [w["pid"] for w in workers.values()] == [served_by]
        assert server.stop() == 0


def test_no_health_process_when_turned_off(tmp_path: Path) -> None:
    model = build_tiny_model(tmp_path / "tiny")
    port = _two_free_ports()
    args = [str(model), "--workers", "1", "--no-health-process"]
    with running_server(args, tmp_path / "server.log", port=port) as server:
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port + 1}/livez", timeout=1)
        assert httpx.get(f"{server.url}/health").json()["pid"] == server.process.pid  # one process


def test_the_health_process_is_a_small_interpreter_of_its_own(tmp_path: Path) -> None:
    """Started afresh (not forked from the supervisor, which imported FastAPI, pandas...): no
    library of the serving path is mapped, and it costs a fraction of a server process."""
    model = build_tiny_model(tmp_path / "tiny")
    port = free_port()
    health = f"http://127.0.0.1:{port}"
    args = [str(model), "--workers", "2", "--health-port", str(port)]
    with running_server(args, tmp_path / "server.log") as server:
        wait_until(lambda: httpx.get(f"{health}/readyz", timeout=1).status_code == 200)
        found = [
            pid
            for pid in children(server.process.pid)
            if b"fastinfer.serving.health_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        assert len(found) == 1, found
        pid = found[0]
        assert os.getpgid(pid) == pid  # a group of its own: a terminal's Ctrl-C is not for it
        maps = Path(f"/proc/{pid}/maps").read_text()
        for library in ("numpy", "pandas", "sklearn", "pydantic_core", "uvloop", "httptools"):
            assert f"/{library}" not in maps, f"the health process maps {library}"
        pss_mb = smaps_kb(pid, "Pss") / 1024
        assert pss_mb < 40, f"health process PSS {pss_mb:.1f} MB"
        # Everything it answered before, from the same board and metrics directory.
        workers = httpx.get(f"{health}/health", timeout=1).json()["alive"]["workers"]
        assert len(workers) == 2
        metrics = httpx.get(f"{health}/metrics", timeout=5)
        assert metrics.status_code == 200 and "fastinfer_saturation" in metrics.text

        # Killed, it is started again (afresh), and the last to stop.
        os.kill(pid, signal.SIGKILL)

        def restarted() -> bool:
            try:
                return httpx.get(f"{health}/readyz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(restarted)
        assert pid not in children(server.process.pid)
        assert server.stop() == 0
    assert "health_process_died" in server.logs()
