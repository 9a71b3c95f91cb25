"""Per-request context: the request id, and an access log line for every response."""

from __future__ import annotations

import re
import time
import uuid

import structlog
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fastinfer.observability.logging import get_logger

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")
_QUIET_PATHS = frozenset({"/livez", "/readyz", "/health", "/favicon.ico"})
access_log = get_logger("fastinfer.access")


def request_id_of(scope: Scope) -> str:
    state = scope.get("state") or {}
    return str(state.get("request_id", ""))


def _incoming_request_id(scope: Scope) -> str:
    for key, value in scope["headers"]:
        if key == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _VALID_REQUEST_ID.match(candidate):
                return candidate
            break  # unusable id (too long, odd characters): replace it rather than echo it
    return uuid.uuid4().hex


class RequestContextMiddleware:
    """Accepts or makes an `X-Request-ID`, returns it, binds it to logs, writes the access log.

    Pure ASGI rather than BaseHTTPMiddleware: it adds no task or stream copy per request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            path = scope["path"]
            fields = {
                "method": scope["method"],
                "path": path,
                "status": status,
                "latency_ms": round((time.perf_counter() - started) * 1000, 3),
            }
            if "model" in state:
                fields["model"] = state["model"]
                fields["version"] = state.get("version")
            if path in _QUIET_PATHS and status < 400:
                access_log.debug("request", **fields)
            else:
                access_log.info("request", **fields)
            structlog.contextvars.unbind_contextvars("request_id")
