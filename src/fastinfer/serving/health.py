"""The health process: probes answered outside the serving processes, from the heartbeat board.

With `--health-port`, the supervisor forks this small process before anything else. It answers
`/livez`, `/readyz` and `/health` from the board (see `heartbeat.py`, `verdict.py`) in well under
a millisecond, whatever load the servers are under, and it sees every server process rather than
whichever one a probe connection happens to reach. With several workers it also serves the
merged `/metrics`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import orjson

from fastinfer.observability.metrics import CONTENT_TYPE
from fastinfer.observability.metrics_multiprocess import MULTIPROC_ENV, multiprocess_exposition
from fastinfer.serving.heartbeat import HeartbeatBoard
from fastinfer.serving.verdict import Verdict, judge

_JSON = "application/json"


def serve_health(board: HeartbeatBoard, sock: socket.socket, loop_block_s: float) -> None:
    """The health process's main: answer probes on `sock` (bound and listening) until SIGTERM."""
    server = _ProbeServer(sock, board, loop_block_s)
    signal.signal(signal.SIGTERM, _exit_now)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when to stop
    with contextlib.suppress(SystemExit):
        server.serve_forever(poll_interval=0.5)


class _ProbeServer(HTTPServer):
    """One thread, one connection at a time: a probe then costs a single wake-up of this
    process, which matters when the CPUs are saturated by the workers. Probes are few."""

    def __init__(self, sock: socket.socket, board: HeartbeatBoard, loop_block_s: float) -> None:
        super().__init__(sock.getsockname(), _ProbeHandler, bind_and_activate=False)
        # Serve the supervisor's socket, already bound and listening, instead of the fresh one
        # TCPServer made (`socket` is a documented attribute of socketserver's servers).
        self.socket.close()
        self.socket = sock
        self.board = board
        self.loop_block_s = loop_block_s


class _ProbeHandler(BaseHTTPRequestHandler):
    server: _ProbeServer
    timeout = 1.0  # a client that sends nothing can hold the port for a second at most

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics" and os.environ.get(MULTIPROC_ENV):
            self._send(200, multiprocess_exposition(), CONTENT_TYPE)
            return
        status, body = answer(path, judge(self.server.board, self.server.loop_block_s))
        self._send(status, orjson.dumps(body), _JSON)

    def _send(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        return


def answer(path: str, verdict: Verdict) -> tuple[int, dict[str, Any]]:
    """The status and JSON body for a probe path (404 for any other path)."""
    if path == "/livez":
        if verdict.alive:
            return 200, {"status": "alive"}
        details = {"wedged": verdict.wedged}
        return 503, _error("stalled", "a server process is wedged", details)
    if path == "/readyz":
        if verdict.ready:
            return 200, {"status": "ready"}
        return 503, _error("not_ready", "not ready", {"models": verdict.not_ready})
    if path == "/health":
        return 200, verdict.as_json()
    return 404, {"code": "not_found", "message": f"no route for {path}"}


def _error(code: str, message: str, details: dict[str, dict[str, str]]) -> dict[str, Any]:
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
