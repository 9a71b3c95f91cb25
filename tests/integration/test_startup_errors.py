"""`fastinfer serve` that cannot start, or is stopped while starting: one clear line, an exit
status, no traceback (issue 16)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.integration.server import free_port

pytestmark = pytest.mark.slow


@contextmanager
def _taken_port() -> Iterator[int]:
    """A loopback port another program listens on (as a plain server would: no SO_REUSEPORT)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield int(sock.getsockname()[1])


def _serve(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "fastinfer", "serve", "--host", "127.0.0.1", *args]
    full_env = {**os.environ, "FASTINFER_LOG_FORMAT": "json", **(env or {})}
    return subprocess.run(
        command, capture_output=True, text=True, env=full_env, timeout=120, check=False
    )


def test_a_taken_serving_port_is_one_line_before_the_models_load(tiny_dir: Path) -> None:
    with _taken_port() as port:
        result = _serve(
            [str(tiny_dir), "--port", str(port), "--workers", "2"],
            env={"FASTINFER_HEALTH_PORT": str(free_port())},
        )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "models_prepared" not in result.stdout + result.stderr
    assert "listening" not in result.stdout + result.stderr
    assert result.stderr.strip() == (
        f"error: the serving port {port} on 127.0.0.1 is already in use "
        "(change it with --port / FASTINFER_PORT)"
    )


def test_a_taken_health_port_is_one_line_before_the_models_load(tiny_dir: Path) -> None:
    with _taken_port() as health:
        started = time.monotonic()
        result = _serve(
            [str(tiny_dir), "--port", str(free_port())],
            env={"FASTINFER_HEALTH_PORT": str(health)},
        )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "models_prepared" not in result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: the health port {health} on 127.0.0.1 is already in use")
    assert time.monotonic() - started < 60


def _slow_starting_model(directory: Path, seconds: float) -> Path:
    """A model whose self-test (in each worker, after the fork) takes `seconds`."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "fi_slow_start.py").write_text(
        "import time\n\n\nclass Model:\n    def predict(self, batch):\n"
        f"        time.sleep({seconds})\n        return [float(r['a']) for r in batch]\n"
    )
    (directory / "model.yaml").write_text(
        "name: slow\nversion: '1'\nruntime: python\n"
        "runtime_options: {entrypoint: 'fi_slow_start:Model'}\n"
        "code_paths: [fi_slow_start.py]\ninputs: [{name: a, type: number}]\n"
        "example: {a: 1}\noutput: {kind: regressor}\n"
    )
    return directory


def test_ctrl_c_while_workers_start_stops_cleanly_without_a_traceback(tmp_path: Path) -> None:
    """Ctrl-C signals the terminal's whole process group. The workers got it twice (from the
    terminal, then forwarded by the supervisor): the second read as "force exit", which skipped
    the application's shutdown and logged an [error] CancelledError traceback."""
    model = _slow_starting_model(tmp_path / "slow", 4.0)
    log_path = tmp_path / "server.log"
    command = [sys.executable, "-m", "fastinfer", "serve", str(model), "--host", "127.0.0.1"]
    command += ["--port", str(free_port()), "--health-port", str(free_port()), "--workers", "2"]
    env = {**os.environ, "FASTINFER_LOG_FORMAT": "json"}
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 60
        while log_path.read_text().count('"starting"') < 2:  # both workers are loading
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        assert process.wait(timeout=60) == 0, log_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    logs = log_path.read_text()
    assert "Traceback" not in logs and "CancelledError" not in logs, logs
    assert '"level":"error"' not in logs, logs
    assert logs.count("Waiting for application shutdown") == 2  # each worker stopped its app


# --- every model fails to load: exit 1 with the reasons, unless --allow-no-models (item 4) ---


def _unloadable(tiny_dir: Path) -> Path:
    (tiny_dir / "model.joblib").unlink()
    return tiny_dir


@pytest.mark.parametrize(
    "layout", [["--workers", "2"], ["--workers", "1", "--no-health-process"]], ids=str
)
def test_serve_exits_1_with_the_reasons_when_no_model_loads(
    tiny_dir: Path, layout: list[str]
) -> None:
    model = _unloadable(tiny_dir)
    result = _serve(
        [str(model), "--port", str(free_port()), *layout],
        env={"FASTINFER_HEALTH_PORT": str(free_port())},
    )
    assert result.returncode == 1, result.stdout + result.stderr
    logs = result.stdout + result.stderr
    (record,) = [line for line in logs.splitlines() if '"no_model_loaded"' in line]
    assert "tiny/1" in record and "model.joblib" in record  # which model, and why
    assert "FASTINFER_ALLOW_NO_MODELS" in record
    assert "Traceback" not in logs


def test_allow_no_models_keeps_serving_for_the_admin_api(tiny_dir: Path) -> None:
    model = _unloadable(tiny_dir)
    port = free_port()
    command = [sys.executable, "-m", "fastinfer", "serve", str(model), "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", "2", "--allow-no-models"]
    env = {**os.environ, "FASTINFER_HEALTH_PORT": str(free_port())}
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, "exited although --allow-no-models was given"
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert ready.status_code == 503
        process.terminate()
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
