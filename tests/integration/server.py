"""Start a real `fastinfer serve` process on a free loopback port, for integration tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path
    health_url: str = ""  # the health process's, when it runs

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def admin(self, token: str, timeout: float = 60) -> httpx.Client:
        """A client of the server's admin API (use it as a context manager)."""
        return httpx.Client(
            base_url=self.url, timeout=timeout, headers={"Authorization": f"Bearer {token}"}
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)

    def kill_hard(self, timeout: float = 30) -> None:
        """kill -9 of every process of the server at once, so none can flush anything: the
        supervisor is stopped first (it would replace a killed worker, and its death would
        SIGTERM the workers, which then drain and flush), then its children, then itself."""
        supervisor = self.process.pid
        os.kill(supervisor, signal.SIGSTOP)
        for child in children(supervisor):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        os.kill(supervisor, signal.SIGKILL)
        self.process.wait(timeout=timeout)


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


@contextmanager
def running_server(
    args: list[str],
    log_path: Path,
    env: dict[str, str] | None = None,
    ready_timeout: float = 60,
    *,
    port: int | None = None,
    fastinfer: list[str] | None = None,
    cwd: Path | None = None,
) -> Iterator[RunningServer]:
    """`port`: the serving port (default: a free one; its health port is then another free one,
    not the default `port + 1`, which may be taken here). `fastinfer`: the command (default: this
    Python's `-m fastinfer`)."""
    chosen = port is not None
    port = port if port is not None else free_port()
    command = [
        *(fastinfer or [sys.executable, "-m", "fastinfer"]),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *args,
    ]
    probes = {} if chosen else {"FASTINFER_HEALTH_PORT": str(free_port())}
    full_env = {**os.environ, "FASTINFER_LOG_FORMAT": "json", **probes, **(env or {})}
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, env=full_env, cwd=cwd
        )
    health = full_env.get("FASTINFER_HEALTH_PORT") or str(port + 1)
    server = RunningServer(
        process, f"http://127.0.0.1:{port}", log_path, f"http://127.0.0.1:{health}"
    )
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if process.poll() is not None:
                raise AssertionError(f"server exited with {process.returncode}:\n{server.logs()}")
            try:
                if httpx.get(f"{server.url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"server not ready in {ready_timeout}s:\n{server.logs()}")
            time.sleep(0.05)
        yield server
    finally:
        if process.poll() is None:  # stop it as an orchestrator would: SIGTERM, then SIGKILL
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def wait_until(check: Callable[[], object], timeout: float = 20.0) -> None:
    """Poll `check` every 50 ms until it is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def smaps_kb(pid: int, field: str) -> int:
    """One field of /proc/PID/smaps_rollup (Pss, Private_Clean...), in kB."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/smaps_rollup")
