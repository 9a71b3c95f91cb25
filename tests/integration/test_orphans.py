"""kill -9 of the supervisor: its workers and health process must not serve on unsupervised,
and the next start removes the shared directories it could not (issue 14, item 7)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx2 as httpx
import pytest

from fastinfer.serving.orphans import OWNER_FILE
from tests.conftest import build_tiny_model
from tests.integration.server import children, free_port, running_server

pytestmark = pytest.mark.slow


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # reparented to an init that may not reap: a zombie has exited
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def _owned_by(pid: int) -> list[Path]:
    owned = []
    for directory in Path("/dev/shm").glob("fastinfer-*"):
        try:
            if (directory / OWNER_FILE).read_text().strip() == str(pid):
                owned.append(directory)
        except OSError:
            continue
    return owned


def test_a_killed_supervisor_takes_its_children_and_leaves_nothing_for_long(
    tmp_path: Path,
) -> None:
    model = build_tiny_model(tmp_path / "tiny")
    health = free_port()
    args = [str(model), "--workers", "2", "--health-port", str(health)]
    with running_server(args, tmp_path / "first.log") as server:
        supervisor = server.process.pid
        processes = children(supervisor)
        assert len(processes) == 3  # two workers and the health process
        left = _owned_by(supervisor)
        assert len(left) == 2  # the run directory and the metrics directory
        os.kill(supervisor, signal.SIGKILL)
        server.process.wait(timeout=10)
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in processes):
            assert time.monotonic() < deadline, "children outlived their supervisor"
            time.sleep(0.1)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{server.url}/livez", timeout=1)
    assert all(directory.exists() for directory in left)  # kill -9 cleaned nothing itself
    with running_server([str(model), "--workers", "1"], tmp_path / "second.log"):
        assert not any(directory.exists() for directory in left)  # the next start did
