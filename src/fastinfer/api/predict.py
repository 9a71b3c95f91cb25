"""The predict exchange on raw ASGI: shared by the hot path and the FastAPI route.

Reading the body ourselves lets the limit be enforced while streaming, and the model's own
validator parses the bytes in one pass.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Callable
from typing import Any

import orjson
from starlette.types import Receive, Scope

from fastinfer.api.context import request_id_of
from fastinfer.dataplane import DataPlane
from fastinfer.errors import (
    MalformedRequest,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)
from fastinfer.observability.logging import get_logger

log = get_logger("fastinfer.v1")
MODEL_VERSION_HEADER = "X-Model-Version"
SERVER_TIMING_HEADER = "Server-Timing"
AFTER_RESPONSE = "after_response"  # scope state: a callable to run once the response is sent
WORK_ITEM = "work_item"  # scope state: the engine's WorkItem (timings) of a prediction
_LOGGED_BODY_BYTES = 8192


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def check_json_content_type(scope: Scope) -> None:
    media_type = (header(scope, b"content-type") or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        shown = media_type or "none"
        raise UnsupportedMediaType(
            f"Content-Type must be application/json (got {shown})",
            details={"content_type": shown},
        )


async def read_body(scope: Scope, receive: Receive, limit: int, timeout: float = 30.0) -> bytes:
    """The whole body, refused with 413 as soon as it passes `limit` (declared or streamed).

    A gzip body (`Content-Encoding: gzip`) is inflated as it arrives, and the same `limit`
    caps its inflated size, so a zip bomb is refused after at most `limit` bytes. The body must
    arrive within `timeout` seconds (408, connection closed), or a client trickling bytes would
    hold a request slot for as long as it likes.
    """
    declared: bytes | None = None
    encoding: bytes | None = None
    for key, value in scope["headers"]:
        if key == b"content-length":
            declared = value
        elif key == b"content-encoding":
            encoding = value.strip().lower()
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(
            f"the body is {declared.decode()} bytes; at most {limit} are accepted",
            details={"max_body_bytes": limit},
        )
    inflate = None
    if encoding is not None and encoding != b"identity":
        if encoding not in (b"gzip", b"x-gzip"):
            shown = encoding.decode("latin-1")[:32]
            raise UnsupportedMediaType(
                f"Content-Encoding {shown!r} is not supported (use gzip or none)",
                details={"content_encoding": shown, "supported": ["gzip", "identity"]},
            )
        inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    task = _BODY_READS.watch(timeout)
    try:
        raw = await _receive_all(receive, limit)
    except asyncio.CancelledError:
        if not _BODY_READS.expired(task):
            raise
        task.uncancel()
        raise RequestTimeout(
            f"the body did not arrive within {timeout:g} seconds",
            details={"body_read_timeout_s": timeout},
            headers={"Connection": "close"},
        ) from None
    finally:
        _BODY_READS.done(task)
    return raw if inflate is None else _inflate(inflate, raw, limit)


class _BodyReads:
    """The request tasks reading a body and their deadlines, checked by one sweeper task.

    A timer per request (`asyncio.timeout`) cost ~5 µs of a ~140 µs request; a dict entry costs
    ~0.3 µs. The sweeper runs only while some body is being read, twice a second, and cancels a
    late reader (read_body turns that into a 408)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deadlines: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def watch(self, timeout: float) -> asyncio.Task[Any]:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (tests): start over
            self._loop, self._deadlines, self._expired = loop, {}, set()
            self._sweeper = None
        task = asyncio.current_task()
        assert task is not None
        self._deadlines[task] = time.monotonic() + timeout
        if self._sweeper is None:
            self._sweeper = loop.create_task(self._sweep())
        return task

    def expired(self, task: asyncio.Task[Any]) -> bool:
        return task in self._expired

    def done(self, task: asyncio.Task[Any]) -> None:
        self._deadlines.pop(task, None)
        self._expired.discard(task)

    async def _sweep(self) -> None:
        try:
            while self._deadlines:
                await asyncio.sleep(0.5)
                now = time.monotonic()
                for task, deadline in list(self._deadlines.items()):
                    if now > deadline and task not in self._expired:
                        self._expired.add(task)
                        task.cancel()
        finally:
            self._sweeper = None


_BODY_READS = _BodyReads()


async def _receive_all(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise MalformedRequest("the client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(
                f"the body is larger than {limit} bytes", details={"max_body_bytes": limit}
            )
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _inflate(inflate: zlib._Decompress, data: bytes, limit: int) -> bytes:
    """Gzip bytes → the body, never producing more than `limit` + 1 bytes before refusing."""
    too_large = PayloadTooLarge(
        f"the body inflates to more than {limit} bytes", details={"max_body_bytes": limit}
    )
    try:
        out = inflate.decompress(data, limit + 1)
        if len(out) > limit or inflate.unconsumed_tail:
            raise too_large  # more output waits: the inflated body passes the limit
        if not inflate.eof or inflate.unused_data:
            raise MalformedRequest("the body is not one complete gzip stream")
    except zlib.error:
        raise MalformedRequest("the body is not valid gzip") from None
    return out


async def predict_exchange(
    plane: DataPlane, name: str, version: str | None, scope: Scope, receive: Receive
) -> tuple[bytes, dict[str, str]]:
    """The JSON answer to `POST /v1/models/{name}[/versions/{version}]/predict` and its headers
    (the version that computed it, Server-Timing); raises ServiceError for 4xx/5xx."""
    model = plane.model(name, version)
    try:
        state = scope.setdefault("state", {})
        state["model"], state["version"] = model.name, model.version
        deadline = plane.deadline(header(scope, b"x-request-timeout"))  # counts from arrival
        check_json_content_type(scope)
        settings = plane.settings
        body = await read_body(
            scope, receive, settings.max_body_bytes, settings.body_read_timeout_s
        )
        if plane.settings.log_request_bodies:  # off by default: bodies may hold personal data
            log.debug("request_body", body=body[:_LOGGED_BODY_BYTES].decode("utf-8", "replace"))
        rows = plane.parse(model, body)
        request_id = request_id_of(scope)
        if model.hooks.pre:
            rows = await plane.before_hooks(model, rows, request_id)
        result, item = await plane.predict(model, rows, deadline, request_id)
        state[WORK_ITEM] = item
        plane.observe(model, rows, result["predictions"], request_id, state.get("started"))
        if model.hooks.post:  # run by the transport once the response is sent
            state[AFTER_RESPONSE] = plane.after_hooks(
                model, rows, result["predictions"], request_id
            )
        encoding = time.perf_counter()
        body = orjson.dumps(result)
        timing = item.server_timing(time.perf_counter() - encoding)
        return body, {MODEL_VERSION_HEADER: model.version, SERVER_TIMING_HEADER: timing}
    finally:
        plane.release(model)


async def run_after(after: Callable[[], None]) -> None:
    """A background task for Starlette responses: on the event loop, not its thread pool."""
    after()
