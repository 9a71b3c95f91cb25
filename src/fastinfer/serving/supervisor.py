"""Every core: a supervisor that loads the models once, then forks one server per CPU.

The children share the listening socket and, through copy-on-write, the deserialised models
(one copy in memory, not one per worker). Each child has its own queues, batcher and inference
threads, so HTTP parsing and validation scale with the cores as well as inference does. The
supervisor only forks, forwards signals, reaps, and replaces a child that dies.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import FrameType

from fastinfer.config import Settings
from fastinfer.model.spec import ModelDirectory
from fastinfer.observability.logging import configure_logging, flush_logging, get_logger
from fastinfer.observability.metrics_multiprocess import (
    mark_process_dead,
    prepare_multiprocess_dir,
    remove_multiprocess_dir,
)
from fastinfer.repository.control import ControlBoard
from fastinfer.repository.registry import ModelRegistry
from fastinfer.security.keys import load_specs, warn_if_unprotected
from fastinfer.serving import health_main
from fastinfer.serving.app import build_registry, create_app
from fastinfer.serving.heartbeat import (
    PHASE_LOADING,
    PHASE_SERVING,
    PHASE_STOPPING,
    HeartbeatBoard,
)
from fastinfer.serving.orphans import die_with_parent, mark_owner, remove_stale_directories
from fastinfer.serving.pages import release_startup_pages
from fastinfer.serving.processes import (
    bind_socket,
    child_signals,
    exit_before_serving,
    fork_holding_stop_signals,
    leave_terminal_group,
    reuse_port_available,
)
from fastinfer.serving.rundir import RUN_DIR_ENV, prepare_run_dir, remove_run_dir
from fastinfer.serving.server import run_server

log = get_logger("fastinfer.supervisor")
_RESTART_WINDOW_S = 60.0
_MAX_RESTARTS_IN_WINDOW = 10
_RESTART_PAUSE_S = 5.0  # when workers keep dying: a pause before the next replacement
_KILL_GRACE_S = 5.0  # past the drain delay and timeout: then the children are killed


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        count = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            count = min(count, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, count)


class Supervisor:
    def __init__(self, settings: Settings, directories: list[ModelDirectory], workers: int) -> None:
        self.settings = settings
        self.directories = directories
        self.workers = workers
        self.children: dict[int, int] = {}  # pid → worker index
        self.stopping = False
        self.failed_exits = 0
        self._restarts: list[float] = []
        self._sock: socket.socket | None = None
        self.board = HeartbeatBoard(workers)
        self.control = ControlBoard(workers)
        self._health_sock: socket.socket | None = None
        self._health: subprocess.Popen[bytes] | None = None
        self._reuse_port = False
        self._grpc_sock: socket.socket | None = None

    def run(self) -> int:
        self.board.set_phase(PHASE_LOADING)
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGALRM, self._on_drain_timeout)
        signal.signal(signal.SIGUSR1, self._on_worker_listening)
        probe_port = self.settings.probe_port
        if probe_port is not None:
            # First, before the models load: probes answer (readyz: loading) from the start.
            self._health_sock = bind_socket(self.settings.host, probe_port)
            log.info("health_port", port=self._health_sock.getsockname()[1])
            self._spawn_health()
        registry = self._prepare_models()
        if self.stopping:
            return self._finish()
        if not self.settings.allow_no_models and refuse_without_models(registry):
            self.failed_exits += 1
            return self._finish()
        self.control.publish(registry.snapshot(generation=1))
        self._reserve_port()
        gc.freeze()  # keep the collector from touching (and so copying) the shared objects
        for index in range(self.workers):
            self._spawn(index, registry)
        if not self.stopping:
            self.board.set_phase(PHASE_SERVING)
        while self.children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            if self._health is not None and pid == self._health.pid:
                self._on_health_exit(status)
            elif pid in self.children:
                self._on_worker_exit(pid, status, registry)
        return self._finish()

    def _prepare_models(self) -> ModelRegistry:
        """Deserialise every model once, before fork: the children share the pages."""
        registry = build_registry(self.settings, self.directories)
        started = time.perf_counter()
        registry.prepare_all()
        log.info(
            "models_prepared",
            models=[m.name for m in registry],
            seconds=round(time.perf_counter() - started, 3),
            workers=self.workers,
        )
        return registry

    def _reserve_port(self) -> None:
        # Each worker listens on its own SO_REUSEPORT socket so the kernel spreads connections
        # evenly (with one shared socket, one busy worker tends to accept nearly all of them).
        # The supervisor's socket only holds the port: bound, never listening.
        self._reuse_port = reuse_port_available()
        self._sock = bind_socket(
            self.settings.host,
            self.settings.port,
            reuse_port=self._reuse_port,
            listen=not self._reuse_port,
        )
        if self.settings.grpc_port is not None and self._reuse_port:
            # Held the same way for every worker's gRPC server (SO_REUSEPORT); port 0 is
            # chosen once, here, so that they all share the one port.
            self._grpc_sock = bind_socket(
                self.settings.host, self.settings.grpc_port, reuse_port=True, listen=False
            )
            port = int(self._grpc_sock.getsockname()[1])
            self.settings = self.settings.model_copy(update={"grpc_port": port})
            log.info("grpc_port", port=port)

    def _on_health_exit(self, status: int) -> None:
        """The health process was reaped (by `os.wait`): replaced unless the server stops."""
        assert self._health is not None
        code = os.waitstatus_to_exitcode(status)
        self._health.returncode = code  # reaped here: its Popen must never wait for the pid
        self._health = None
        if not self.stopping:
            log.error("health_process_died", code=code)
            self._throttle_restarts()  # one that cannot start (a broken install) must not spin
            if not self.stopping:
                self._spawn_health()

    def _on_worker_exit(self, pid: int, status: int, registry: ModelRegistry) -> None:
        """Forget the worker's shared state; replace it unless the server is stopping."""
        index = self.children.pop(pid)
        code = os.waitstatus_to_exitcode(status)
        self.control.clear(index)
        mark_process_dead(pid)
        if self.control.release_for(pid):
            log.error("model_change_lock_freed", pid=pid, worker=index)
        if self.stopping:
            if code != 0:
                self.failed_exits += 1
            log.info("worker_exited", pid=pid, worker=index, code=code)
            return
        log.error("worker_died", pid=pid, worker=index, code=code)
        self._throttle_restarts()
        if not self.stopping:
            self._spawn(index, registry)

    def _finish(self) -> int:
        signal.alarm(0)
        if self._health is not None:  # last: probes answer until every worker is gone
            self._health.terminate()
            self._health.wait()
            self._health = None
        log.info("stopped", failed_exits=self.failed_exits)
        return 0 if self.failed_exits == 0 else 1

    def _spawn_health(self) -> None:
        """Start the health process: a fresh interpreter (`health_main`), not a fork, so that it
        holds none of what the supervisor imported. It inherits the socket and the board's
        memory, in a process group of its own (as `_leave_terminal_group`), and dies with the
        supervisor (`die_with_parent`, in the child)."""
        assert self._health_sock is not None
        argv, fds = health_main.command(
            self.board,
            self._health_sock,
            self.settings.loop_block_s,
            detailed=not load_specs(self.settings),
            parent=os.getpid(),
        )
        self._health = subprocess.Popen(argv, pass_fds=fds, process_group=0)  # noqa: S603

    def _spawn(self, index: int, registry: ModelRegistry) -> None:
        assert self._sock is not None
        flush_logging()
        self.board.write(index, 0, 0, "starting")
        parent = os.getpid()
        pid = fork_holding_stop_signals()
        if pid == 0:  # the child: never returns
            code = 1
            try:
                # SIGUSR1 ignored until its server handles it: a sibling's rebalance must not
                # kill this one.
                # A stop before its server takes the signals over: nothing is in flight, exit 0
                # (killed by the default action, it counted as a failed exit).
                child_signals(interrupt=exit_before_serving, terminate=exit_before_serving)
                leave_terminal_group()
                die_with_parent(parent)  # a supervisor killed -9 takes its workers with it
                if self._health_sock is not None:
                    self._health_sock.close()
                if self._grpc_sock is not None:
                    self._grpc_sock.close()  # its gRPC server binds the port itself
                configure_logging(self.settings.log_level, self.settings.log_format)
                log.info("worker_started", worker=index, pid=os.getpid())
                app = create_app(
                    self.settings,
                    registry=registry,
                    heartbeat=(self.board, index),
                    control=(self.control, index),
                    listen_when_loaded=self._reuse_port,
                )
                listening = self._sock
                if self._reuse_port:
                    port = int(self._sock.getsockname()[1])  # the one the supervisor holds
                    # Bound, not listening: uvicorn listens after startup (models loaded), and
                    # until then the kernel sends this port's connections to the other workers.
                    listening = bind_socket(self.settings.host, port, reuse_port=True, listen=False)
                    self._sock.close()
                # It tells the supervisor once it listens (a worker that starts late, or a
                # replacement, would otherwise get no connection until clients reconnect).
                run_server(app, self.settings, sockets=[listening], announce_listening=True)
                code = 0
            except BaseException:
                log.exception("worker_crashed", worker=index)
            finally:
                flush_logging()
                os._exit(code)
        self.children[pid] = index
        configure_logging(self.settings.log_level, self.settings.log_format, background=False)

    def _throttle_restarts(self) -> None:
        now = time.monotonic()
        self._restarts = [t for t in self._restarts if now - t < _RESTART_WINDOW_S]
        self._restarts.append(now)
        if len(self._restarts) > _MAX_RESTARTS_IN_WINDOW:
            log.error("worker_restarts_throttled", restarts=len(self._restarts))
            time.sleep(_RESTART_PAUSE_S)

    def _on_stop_signal(self, sig: int, _frame: FrameType | None) -> None:
        if not self.stopping:
            self.stopping = True
            self.board.set_phase(PHASE_STOPPING)
            if self._sock is not None:
                self._sock.close()  # the children keep their copies until they stop accepting
            if self._grpc_sock is not None:
                self._grpc_sock.close()
            settings = self.settings
            signal.alarm(int(settings.drain_delay_s + settings.drain_timeout_s + _KILL_GRACE_S))
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def _on_worker_listening(self, _sig: int, _frame: FrameType | None) -> None:
        """A worker listens (one that started late, or a replacement): every worker closes its
        connections after their next response, and the clients' reconnections spread over all
        of them (the kernel balances new connections, never existing ones).

        The supervisor then hands back the pages it alone maps (`pages.py`); what the listening
        workers use is shared by then, which it keeps. On every announcement, not after the
        last one counted: signals sent together arrive as one, so a count could stop short.
        The handler runs after the last of those signals was sent; the workers announce within
        milliseconds of each other (their models were built before the fork)."""
        if self.stopping:
            return
        self._release_startup_pages()
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGUSR1)

    def _release_startup_pages(self) -> None:
        released = release_startup_pages()
        if released is not None:
            log.info(
                "startup_pages_released",
                rss_before_mb=round(released.rss_before_kb / 1024, 1),
                rss_after_mb=round(released.rss_after_kb / 1024, 1),
                mappings=released.mappings,
                refused=released.refused,
            )

    def _on_drain_timeout(self, _sig: int, _frame: FrameType | None) -> None:
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self.failed_exits += 1


def refuse_without_models(registry: ModelRegistry) -> bool:
    """True (and the reasons logged) when no model was prepared: a server that can only answer
    503 should exit, so that the orchestrator shows it (CrashLoopBackOff), not look alive.
    Checked after deserialising, before fork; a model that deserialised but failed its build or
    self-test (before the fork or in the workers) still leaves a server answering 503 (its
    /readyz says why)."""
    reasons = {f"{m.name}/{m.version}": m.reason or "failed" for m in registry if not m.prepared}
    if len(reasons) < len(registry):
        return False
    log.error(
        "no_model_loaded",
        reasons=reasons or "no models: the repository is empty",
        hint="fix the models, or set FASTINFER_ALLOW_NO_MODELS=true (--allow-no-models) "
        "to serve without them and load them through the admin API",
    )
    return True


def serve(settings: Settings, directories: list[ModelDirectory]) -> int:
    """Serve in one process, or in one per CPU under a supervisor; the exit status."""
    warn_if_unprotected(settings)
    remove_stale_directories()  # left by a supervisor that was killed (kill -9 cleans nothing)
    workers = settings.workers or available_cpus()
    if workers == 1 and settings.probe_port is None:
        registry = build_registry(settings, directories)
        registry.prepare_all()  # as a supervisor does: a model nothing can load ends here
        if not settings.allow_no_models and refuse_without_models(registry):
            return 1
        run_server(create_app(settings, registry=registry), settings)
        return 0
    configure_logging(settings.log_level, settings.log_format, background=False)
    metrics_dir = prepare_multiprocess_dir()  # before any worker imports prometheus_client
    shared_dir = prepare_run_dir()  # the workers' shared monitoring state
    mark_owner(metrics_dir)
    mark_owner(shared_dir)
    log.info(
        "shared_directories",
        metrics=os.environ.get("PROMETHEUS_MULTIPROC_DIR"),
        run=os.environ.get(RUN_DIR_ENV),
    )
    try:
        return Supervisor(settings, directories, workers).run()
    finally:
        remove_multiprocess_dir(metrics_dir)
        remove_run_dir(shared_dir)
