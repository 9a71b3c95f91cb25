"""The health process: probes answered outside the serving processes, from the heartbeat board.

The supervisor starts this small process (on by default, on `--port` + 1) before anything else,
as an interpreter of its own (`health_main.py`) that imports little.
It answers `/livez`, `/readyz` and `/health` from the board (see `heartbeat.py`, `verdict.py`)
in well under a millisecond, whatever load the servers are under, and it sees every server
process rather than whichever one a probe connection happens to reach. With several workers it
also serves the merged `/metrics`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from typing import Any

import orjson

from fastinfer.observability.metrics_multiprocess import (
    CONTENT_TYPE,
    MULTIPROC_ENV,
    multiprocess_exposition,
)
from fastinfer.serving.heartbeat import HeartbeatBoard
from fastinfer.serving.verdict import Verdict, judge

_JSON = "application/json"
REQUEST_DEADLINE_S = 2.0  # the whole request head must arrive within this, however it trickles
MAX_HEAD_BYTES = 8192  # request line and headers together; a probe sends ~100 bytes
_WRITE_DEADLINE_S = 2.0
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            408: "Request Timeout", 431: "Request Header Fields Too Large",
            503: "Service Unavailable"}  # fmt: skip


def serve_health(
    board: HeartbeatBoard, sock: socket.socket, loop_block_s: float, *, detailed: bool = True
) -> None:
    """The health process's main: answer probes on `sock` (bound and listening) until SIGTERM.

    Every connection is served concurrently on one event loop, one request per connection, and
    a request whose head has not arrived within REQUEST_DEADLINE_S is answered 408 and closed:
    a client trickling bytes can hold only its own connection, never the probes of others.

    Probe reasons never show directories or exception names; `/health` shows worker pids only
    when `detailed` (no API keys configured: the serving port's `/health` is open then too)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when to stop
    signal.signal(signal.SIGTERM, _exit_now)  # until the event loop takes SIGTERM over
    asyncio.run(_serve(board, sock, loop_block_s, detailed))


async def _serve(
    board: HeartbeatBoard, sock: socket.socket, loop_block_s: float, detailed: bool
) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _answer_one(reader, writer, board, loop_block_s, detailed)

    sock.setblocking(False)
    server = await asyncio.start_server(connection, sock=sock, limit=MAX_HEAD_BYTES)
    async with server:
        await stop.wait()


async def _answer_one(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    board: HeartbeatBoard,
    loop_block_s: float,
    detailed: bool,
) -> None:
    try:
        status, payload, content_type = await _respond(reader, board, loop_block_s, detailed)
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(payload)}\r\n"
            "X-Content-Type-Options: nosniff\r\n"
            "Cache-Control: no-store\r\n"
            "Connection: close\r\n\r\n"
        ).encode("latin-1")
        writer.write(head + payload)
        async with asyncio.timeout(_WRITE_DEADLINE_S):
            await writer.drain()
    except (OSError, TimeoutError):
        pass  # the client went away or stopped reading: nothing more to do for it
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(_WRITE_DEADLINE_S):
                await writer.wait_closed()


async def _respond(
    reader: asyncio.StreamReader, board: HeartbeatBoard, loop_block_s: float, detailed: bool
) -> tuple[int, bytes, str]:
    """Status, body and content type for the request `reader` brings (read under limits)."""
    try:
        async with asyncio.timeout(REQUEST_DEADLINE_S):
            head = await reader.readuntil(b"\r\n\r\n")
    except TimeoutError:
        return _problem(408, "request_timeout", "the request did not arrive in time")
    except asyncio.LimitOverrunError:
        return _problem(
            431, "headers_too_large", f"the request head is over {MAX_HEAD_BYTES} bytes"
        )
    except asyncio.IncompleteReadError:
        return _problem(400, "malformed_request", "the request ended before its headers did")
    method, _, rest = head.partition(b" ")
    path = rest.split(b" ", 1)[0].split(b"?", 1)[0].decode("latin-1")
    if method != b"GET":
        return _problem(405, "method_not_allowed", "only GET is served on the health port")
    if path == "/metrics" and os.environ.get(MULTIPROC_ENV):
        return 200, await asyncio.to_thread(multiprocess_exposition), CONTENT_TYPE
    status, body = answer(path, judge(board, loop_block_s), detailed=detailed)
    return status, orjson.dumps(body), _JSON


def _problem(status: int, code: str, message: str) -> tuple[int, bytes, str]:
    body = {"code": code, "message": message, "details": None, "request_id": os.urandom(16).hex()}
    return status, orjson.dumps(body), _JSON


def answer(path: str, verdict: Verdict, *, detailed: bool = True) -> tuple[int, dict[str, Any]]:
    """The status and JSON body for a probe path (404 for any other path)."""
    public = verdict.public()
    if path == "/health":
        return 200, (verdict if detailed else public).as_json()
    verdict = public
    if path == "/livez":
        if verdict.alive:
            return 200, {"status": "alive"}
        details = {"wedged": verdict.wedged}
        return 503, _error("stalled", "a server process is wedged", details)
    if path == "/readyz":
        if verdict.ready:
            return 200, {"status": "ready"}
        return 503, _error("not_ready", "not ready", {"models": verdict.not_ready})
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
    os._exit(0)  # a SIGTERM before the loop runs: nothing is in flight yet
