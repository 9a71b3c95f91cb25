"""Probes answered outside the serving processes, from heartbeats in shared memory.

With `--health-port`, the supervisor forks a small health process before anything else. Each
server process writes a heartbeat into its slot of a shared board several times a second: the
time its event loop last ran, whether it is ready, draining, or has stalled inference. The
health process answers `/livez` and `/readyz` from the board in well under a millisecond,
whatever load the servers are under, and it sees every server process rather than whichever
one a probe connection happens to reach.
"""

from __future__ import annotations

import asyncio
import contextlib
import mmap
import os
import signal
import socket
import struct
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import orjson

from fastinfer.observability.metrics import CONTENT_TYPE
from fastinfer.observability.metrics_multiprocess import MULTIPROC_ENV, multiprocess_exposition

# Board header: supervisor phase, expected workers. Slot: seq, pid, tick, flags, reason.
_HEADER = struct.Struct("<qq")
_SLOT = struct.Struct("<qqdq96s")
PHASE_LOADING, PHASE_SERVING, PHASE_STOPPING = 0, 1, 2
_PHASES = {PHASE_LOADING: "loading", PHASE_SERVING: "serving", PHASE_STOPPING: "stopping"}
READY, DRAINING, STALLED = 1, 2, 4
HEARTBEAT_S = 0.2


@dataclass(frozen=True)
class SlotState:
    index: int
    pid: int
    tick: float
    flags: int
    reason: str


class Board:
    """Shared memory inherited across fork: one writer per slot, a seqlock against torn reads."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._memory = mmap.mmap(-1, _HEADER.size + slots * _SLOT.size)

    def set_phase(self, phase: int, workers: int) -> None:
        _HEADER.pack_into(self._memory, 0, phase, workers)

    def phase(self) -> tuple[int, int]:
        phase, workers = _HEADER.unpack_from(self._memory, 0)
        return int(phase), int(workers)

    def write(self, index: int, pid: int, flags: int, reason: str = "") -> None:
        offset = _HEADER.size + index * _SLOT.size
        seq = struct.unpack_from("<q", self._memory, offset)[0]
        struct.pack_into("<q", self._memory, offset, seq + 1)  # odd: being written
        encoded = reason.encode("utf-8", "replace")[:96]
        _SLOT.pack_into(self._memory, offset, seq + 1, pid, time.monotonic(), flags, encoded)
        struct.pack_into("<q", self._memory, offset, seq + 2)

    def read(self, index: int) -> SlotState:
        offset = _HEADER.size + index * _SLOT.size
        for _ in range(100):
            seq, pid, tick, flags, reason = _SLOT.unpack_from(self._memory, offset)
            if seq % 2 == 0 and struct.unpack_from("<q", self._memory, offset)[0] == seq:
                text = reason.rstrip(b"\0").decode("utf-8", "replace")
                return SlotState(index, int(pid), float(tick), int(flags), text)
        return SlotState(index, 0, 0.0, 0, "unreadable")


class Heartbeat:
    """The server side: a loop task that writes this process's state into its slot."""

    def __init__(self, board: Board, index: int, state: Any) -> None:
        self._board, self._index, self._state = board, index, state

    async def run(self) -> None:
        from fastinfer.api.probes import readiness_problems  # the same truth as /readyz

        pid = os.getpid()
        while True:
            engine = self._state.engine
            problems = readiness_problems(self._state)
            flags = (0 if problems else READY) | (DRAINING if engine.draining else 0)
            stalled = engine.stalled()
            if stalled:
                flags |= STALLED
            reason = "; ".join(f"{k}: {v}" for k, v in (stalled or problems).items())
            self._board.write(self._index, pid, flags, reason)
            await asyncio.sleep(HEARTBEAT_S)


def evaluate(board: Board, loop_block_s: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """(liveness, readiness) answers: each `{"ok": bool, ...}` from the board alone."""
    now = time.monotonic()
    phase, workers = board.phase()
    slots = [board.read(i) for i in range(workers)]
    wedged = {}
    not_ready = {}
    for slot in slots:
        name = f"worker-{slot.index}"
        if slot.pid == 0:
            not_ready[name] = "starting"
            continue
        age = now - slot.tick
        if age > loop_block_s:
            wedged[name] = f"no heartbeat for {age:.1f}s (event loop blocked)"
        elif slot.flags & STALLED:
            wedged[name] = slot.reason or "inference stalled"
        if not slot.flags & READY:
            not_ready[name] = slot.reason or "not ready"
        elif slot.flags & DRAINING:
            not_ready[name] = "draining"
    if phase != PHASE_SERVING:
        not_ready = {"supervisor": _PHASES.get(phase, "unknown"), **not_ready}
    if phase == PHASE_STOPPING:
        wedged = {}  # workers stop beating as they exit: that is not a wedge
    workers_view = {
        f"worker-{s.index}": {"pid": s.pid, "heartbeat_age_s": round(now - s.tick, 3)}
        for s in slots
        if s.pid
    }
    alive = {"ok": not wedged, "wedged": wedged, "workers": workers_view}
    ready = {"ok": not not_ready, "not_ready": not_ready}
    return alive, ready


def serve_health(board: Board, sock: socket.socket, loop_block_s: float) -> None:
    """The health process's main: answer probes until SIGTERM."""

    class Handler(BaseHTTPRequestHandler):
        timeout = 1.0  # a client that sends nothing can hold the port for a second at most

        def do_GET(self) -> None:
            alive, ready = evaluate(board, loop_block_s)
            path = self.path.split("?", 1)[0]
            if path == "/livez":
                status, body = (
                    (200, {"status": "alive"})
                    if alive["ok"]
                    else (
                        503,
                        _error(
                            "stalled", "a server process is wedged", {"wedged": alive["wedged"]}
                        ),
                    )
                )
            elif path == "/readyz":
                status, body = (
                    (200, {"status": "ready"})
                    if ready["ok"]
                    else (503, _error("not_ready", "not ready", {"models": ready["not_ready"]}))
                )
            elif path == "/metrics" and os.environ.get(MULTIPROC_ENV):
                self._send(200, multiprocess_exposition(), CONTENT_TYPE)
                return
            elif path == "/health":
                status, body = 200, {"alive": alive, "ready": ready}
            else:
                status, body = 404, {"code": "not_found", "message": f"no route for {path}"}
            self._send(status, orjson.dumps(body), "application/json")

        def _send(self, status: int, payload: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            return

    # One thread, one connection at a time: a probe then costs a single wake-up of this
    # process, which matters when the CPUs are saturated by the workers. Probes are few.
    class Server(HTTPServer):
        timeout = 2

        def server_bind(self) -> None:  # the socket is already bound by the supervisor
            self.server_address = sock.getsockname()

    server = Server(sock.getsockname(), Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    signal.signal(signal.SIGTERM, _exit_now)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when to stop
    with contextlib.suppress(SystemExit):
        server.serve_forever(poll_interval=0.5)


def _error(code: str, message: str, details: dict[str, Any]) -> dict[str, Any]:
    """The service's one error shape (a probe has no request id of its own: a fresh one)."""
    reasons = next(iter(details.values()))
    text = "; ".join(f"{name}: {why}" for name, why in reasons.items())
    return {
        "code": code,
        "message": f"{message}: {text}",
        "details": details,
        "request_id": os.urandom(16).hex(),
    }


def _exit_now(_sig: int, _frame: object) -> None:
    raise SystemExit(0)
