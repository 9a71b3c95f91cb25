"""Start, wait for, inspect and stop the servers under test, each a real process tree."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import HOST, LOGS, ROOT, http_request

SERVERS = ("fastinfer", "naive", "floor")
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0
LOG_TAIL_BYTES = 256 * 1024
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


@dataclass
class ServerSpec:
    """How to run one server: its argv ("{port}" stands for the port) and extra environment."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    ready_path: str = "/readyz"
    workers: int = 1


@dataclass
class RunningServer:
    spec: ServerSpec
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    spawned_at: float
    ready_seconds: float | None = None
    health_port: int | None = None

    @property
    def probe_port(self) -> int:
        """Where a kubelet would probe: the health port when the server has one."""
        return self.health_port or self.port

    @property
    def pid(self) -> int:
        return self.proc.pid


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def fastinfer_supports_workers() -> bool:
    """Whether this checkout's `fastinfer serve` has a --workers option yet."""
    out = subprocess.run(
        [str(Path(sys.executable).parent / "fastinfer"), "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )
    return "--workers" in out.stdout


def fastinfer_spec(model_dirs: list[Path], workers: int, with_workers_option: bool) -> ServerSpec:
    argv = [
        str(Path(sys.executable).parent / "fastinfer"),
        "serve",
        *[str(d) for d in model_dirs],
        "--host",
        HOST,
        "--port",
        "{port}",
    ]
    if with_workers_option:
        argv += ["--workers", str(workers), "--health-port", "{health_port}"]
    return ServerSpec("fastinfer", argv, workers=workers if with_workers_option else 1)


def _uvicorn_argv(app: str, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--host",
        HOST,
        "--port",
        "{port}",
        "--workers",
        str(workers),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]


def naive_spec(model_dirs: dict[str, Path], workers: int) -> ServerSpec:
    env = {f"BENCH_{name.upper()}_DIR": str(path) for name, path in model_dirs.items()}
    return ServerSpec("naive", _uvicorn_argv("bench.apps.naive:app", workers), env, workers=workers)


def floor_spec(answers_file: Path, workers: int) -> ServerSpec:
    env = {"BENCH_FLOOR_ANSWERS": str(answers_file)}
    return ServerSpec("floor", _uvicorn_argv("bench.apps.floor:app", workers), env, workers=workers)


def start(spec: ServerSpec) -> RunningServer:
    """Spawn the server in its own session (so its whole tree can be stopped) on a free port."""
    port = free_port()
    LOGS.mkdir(parents=True, exist_ok=True)
    log_path = LOGS / f"{spec.name}.log"
    health_port = free_port() if "{health_port}" in spec.argv else None
    argv = [
        a.replace("{port}", str(port)).replace("{health_port}", str(health_port)) for a in spec.argv
    ]
    env = {**os.environ, **spec.env}
    with log_path.open("wb") as log:
        spawned_at = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return RunningServer(spec, port, proc, log_path, spawned_at, health_port=health_port)


def log_tail(server: RunningServer, lines: int = 30) -> str:
    try:
        text = server.log_path.read_bytes()[-LOG_TAIL_BYTES:].decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def wait_ready(server: RunningServer, timeout: float = READY_TIMEOUT_S) -> float:
    """Seconds from spawn to the first 200 from the ready path; raise if it never comes."""
    deadline = server.spawned_at + timeout
    last = "no answer yet"
    for _ in range(int(timeout / 0.01) + 1):  # bounded; the deadline ends it sooner
        if server.proc.poll() is not None:
            raise RuntimeError(
                f"{server.spec.name} exited with status {server.proc.returncode} before it was "
                f"ready:\n{log_tail(server)}"
            )
        try:
            result = http_request(server.port, "GET", server.spec.ready_path, timeout=1.0)
            if result.status == 200:
                server.ready_seconds = time.perf_counter() - server.spawned_at
                return server.ready_seconds
            last = f"{result.status} {result.body[:300]!r}"
        except OSError as exc:
            last = f"{type(exc).__name__}: {exc}"
        if time.perf_counter() > deadline:
            break
        time.sleep(0.01)
    raise RuntimeError(
        f"{server.spec.name} was not ready after {timeout:.0f} s (last: {last}):\n"
        f"{log_tail(server)}"
    )


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants that are alive now (read from /proc)."""
    children = _children_map()
    tree: list[int] = []
    stack = [pid]
    while stack and len(tree) < 10_000:
        current = stack.pop()
        if Path(f"/proc/{current}").exists():
            tree.append(current)
            stack.extend(children.get(current, []))
    return tree


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far (/proc/<pid>/stat, utime + stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def memory_kb(pid: int) -> dict[str, int | None]:
    """RSS (from /proc/<pid>/statm) and PSS (from /proc/<pid>/smaps_rollup), in KiB."""
    rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE_KB
    pss: int | None = None
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
                break
    except OSError:
        pass
    return {"rss_kb": rss, "pss_kb": pss}


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()[:300]


def memory_report(server: RunningServer) -> dict[str, Any]:
    """RSS and PSS of every process in the server's tree, and their totals."""
    processes = []
    for pid in process_tree(server.pid):
        try:
            processes.append(
                {"pid": pid, "ppid": _parent_of(pid), "cmdline": _cmdline(pid), **memory_kb(pid)}
            )
        except OSError:
            continue
    pss = [p["pss_kb"] for p in processes]
    return {
        "processes": processes,
        "count": len(processes),
        "rss_kb_total": sum(int(p["rss_kb"] or 0) for p in processes),
        "pss_kb_total": sum(int(v) for v in pss if v is not None) if pss else None,
    }


def idle_cpu(server: RunningServer, seconds: float = 5.0) -> dict[str, Any]:
    """CPU used by each process of the tree over `seconds` of no load, in % of one core."""
    pids = process_tree(server.pid)
    before: dict[int, float] = {}
    for pid in pids:
        try:
            before[pid] = cpu_seconds(pid)
        except OSError:
            continue
    started = time.perf_counter()
    time.sleep(seconds)
    elapsed = time.perf_counter() - started
    per_process: list[dict[str, Any]] = []
    total = 0.0
    for pid, used in before.items():
        try:
            delta = cpu_seconds(pid) - used
        except OSError:
            continue
        percent = 100 * delta / elapsed
        total += percent
        per_process.append({"pid": pid, "cmdline": _cmdline(pid), "cpu_percent": percent})
    return {"seconds": round(elapsed, 3), "processes": per_process, "cpu_percent_total": total}


def _parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _session_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])
    except (OSError, ValueError, IndexError):
        return None


def _signal_all(pids: list[int], sig: signal.Signals, session: int) -> None:
    """Signal those of `pids` that are still in `session` (the server's own: never a reused pid)."""
    for pid in pids:
        if _session_of(pid) != session:
            continue
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            continue


def stop(server: RunningServer, timeout: float = STOP_TIMEOUT_S) -> int | None:
    """SIGTERM the supervisor, wait; then SIGKILL whatever of its tree is left. Its exit status."""
    tree = process_tree(server.pid)
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_all(process_tree(server.pid), signal.SIGKILL, server.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):  # reported: no exit status
                server.proc.wait(timeout=timeout)
    leftovers = [pid for pid in tree if pid != server.pid and _session_of(pid) == server.pid]
    if leftovers:  # workers that outlived their supervisor: ours, so end them
        time.sleep(1.0)
        _signal_all(leftovers, signal.SIGKILL, server.pid)
    _trim_log(server.log_path)
    return server.proc.returncode


def _trim_log(path: Path) -> None:
    """Keep only the tail of a server log: access logs under load run to hundreds of MB."""
    try:
        size = path.stat().st_size
        if size > LOG_TAIL_BYTES:
            with path.open("rb") as handle:
                handle.seek(size - LOG_TAIL_BYTES)
                tail = handle.read()
            path.write_bytes(b"[... trimmed by bench ...]\n" + tail)
    except OSError:
        pass
