"""`fastinfer serve` that cannot start, or is stopped while starting: one clear line, an exit
status, no traceback (issue 16)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
