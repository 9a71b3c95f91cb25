"""The HTTP floor: a raw ASGI app (no framework, no model) on the same uvicorn.

It reads the whole body, parses it with orjson, and answers a precomputed response of the same
shape as fastinfer's: one canned prediction per input row. Nothing serving these requests over
HTTP from Python can be much faster, so it is the ceiling a real server is measured against.

    BENCH_FLOOR_ANSWERS=bench/build/floor_answers.json \\
        uvicorn bench.apps.floor:app --workers 2 --loop uvloop --http httptools --no-access-log

The answers file maps a model name to `{"model", "version", "prediction"}`.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_CACHED_SIZES = 64
_JSON = [(b"content-type", b"application/json")]


def _load_answers() -> dict[str, tuple[bytes, bytes]]:
    """Path → (response prefix up to the predictions list, one prediction's JSON)."""
    path = os.environ.get("BENCH_FLOOR_ANSWERS")
    answers: dict[str, Any] = orjson.loads(Path(path).read_bytes()) if path else {}
    routes: dict[str, tuple[bytes, bytes]] = {}
    for name, answer in answers.items():
        head = {"model": answer["model"], "version": answer["version"], "request_id": "floor"}
        prefix = orjson.dumps(head)[:-1] + b',"predictions":['
        routes[f"/v1/models/{name}/predict"] = (prefix, orjson.dumps(answer["prediction"]))
    return routes


ROUTES = _load_answers()
_BODIES: dict[tuple[str, int], bytes] = {}
_ALIVE = b'{"status":"alive"}'


async def _respond(send: Send, status: int, body: bytes) -> None:
    headers = [*_JSON, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _answer(path: str, rows: int) -> bytes:
    """The canned response for `rows` rows, built once per (path, rows)."""
    key = (path, rows)
    cached = _BODIES.get(key)
    if cached is None:
        prefix, prediction = ROUTES[path]
        cached = prefix + b",".join([prediction] * rows) + b"]}"
        if len(_BODIES) < MAX_CACHED_SIZES:
            _BODIES[key] = cached
    return cached


async def _lifespan(receive: Receive, send: Send) -> None:
    for _ in range(2):  # startup, then shutdown
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The whole server: /livez and /readyz answered directly, predict routes canned."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path in ("/livez", "/readyz"):
        await _respond(send, 200, _ALIVE)
        return
    if path not in ROUTES:
        await _respond(send, 404, b'{"code":"not_found"}')
        return
    chunks: list[bytes] = []
    size = 0
    more = True
    while more and size <= MAX_BODY_BYTES:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        chunks.append(chunk)
        more = message.get("more_body", False)
    try:
        rows = len(orjson.loads(b"".join(chunks))["inputs"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        await _respond(send, 400, b'{"code":"malformed_request"}')
        return
    await _respond(send, 200, _answer(path, rows))
