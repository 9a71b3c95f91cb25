"""The predict exchange on raw ASGI: shared by the hot path and the FastAPI route.

Reading the body ourselves lets the limit be enforced while streaming, and the model's own
validator parses the bytes in one pass.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Callable

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
    try:
        async with asyncio.timeout(timeout):
            raw = await _receive_all(receive, limit)
    except TimeoutError:
        raise RequestTimeout(
            f"the body did not arrive within {timeout:g} seconds",
            details={"body_read_timeout_s": timeout},
            headers={"Connection": "close"},
        ) from None
    return raw if inflate is None else _inflate(inflate, raw, limit)


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
