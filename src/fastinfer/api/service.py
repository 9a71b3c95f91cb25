"""The ASGI entry point of a server process.

The routes that carry the load — predict and the probes — are served here in plain ASGI,
without FastAPI's routing, dependency and middleware layers (several times the cost of the
work itself for a one-row request). Everything else goes through FastAPI, which also
documents every route. Every response gets an `X-Request-ID` and an access log line.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import orjson
import structlog
from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.types import Message, Receive, Scope, Send

from fastinfer.api.context import incoming_request_id
from fastinfer.api.errors import error_json, internal_error
from fastinfer.api.predict import AFTER_RESPONSE, header, predict_exchange
from fastinfer.api.probes import ProbeAnswer, liveness, readiness
from fastinfer.api.v2 import INFER_PREFIX, INFER_SUFFIX, error_body, infer_exchange, infer_target
from fastinfer.dataplane import DataPlane
from fastinfer.errors import ServiceError
from fastinfer.observability.logging import emit_record, get_logger
from fastinfer.observability.metrics import Metrics

if TYPE_CHECKING:
    from fastinfer.observability.tracing import Tracing
    from fastinfer.security.keys import Guard

log = get_logger("fastinfer.errors")
_PREDICT_PREFIX = "/v1/models/"
_PREDICT_SUFFIX = "/predict"
_PROBES = {"/livez": liveness, "/readyz": readiness}
_QUIET_PATHS = frozenset({"/livez", "/readyz", "/health", "/metrics", "/favicon.ico"})


class ServiceApp:
    def __init__(
        self,
        api: FastAPI,
        plane: DataPlane,
        metrics: Metrics,
        *,
        cors: bool,
        guard: Guard | None = None,
    ) -> None:
        self.api = api
        self.guard = guard  # None: authentication is off (no API key configured)
        self._metrics = metrics
        self.state = api.state
        self._plane = plane
        self._cors = cors  # browsers' cross-origin requests take the FastAPI path (CORS headers)
        self.tracing: Tracing | None = None  # set by the lifespan when tracing is on

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.api(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = incoming_request_id(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["started"] = started
        status = 500
        try:
            if self.guard is not None:
                try:
                    self.guard.check(scope, state)
                except ServiceError as exc:
                    status = await self._deny(exc, scope, send, request_id)
                    return
            status = await self._dispatch(scope, receive, send, request_id)
        finally:
            elapsed = time.perf_counter() - started
            self._access_log(scope, state, status, elapsed, request_id)
            if "version" in state:  # a prediction that reached a model version
                protocol = "v2" if scope["path"].startswith("/v2/") else "v1"
                self._metrics.request(state["model"], state["version"], protocol, status, elapsed)
            if self.tracing is not None:  # spans after the fact, from the times taken anyway
                self.tracing.record(scope, state, status, started, elapsed)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> int:
        path: str = scope["path"]
        method: str = scope["method"]
        if method == "POST" and path.startswith(_PREDICT_PREFIX) and path.endswith(_PREDICT_SUFFIX):
            target = predict_target(path[len(_PREDICT_PREFIX) : -len(_PREDICT_SUFFIX)])
            if target is not None and not (self._cors and header(scope, b"origin")):
                return await self._predict(*target, scope, receive, send, request_id)
        elif method == "POST" and path.startswith(INFER_PREFIX) and path.endswith(INFER_SUFFIX):
            target = infer_target(path)
            if target is not None and not (self._cors and header(scope, b"origin")):
                status, payload, extra = await infer_exchange(self._plane, *target, scope, receive)
                await _send(send, status, payload, request_id, extra)
                after = scope["state"].pop(AFTER_RESPONSE, None)
                if after is not None:
                    after()
                return status
        elif method == "GET" and path in _PROBES:
            answer: ProbeAnswer = _PROBES[path](self.state, request_id)
            status, body, headers = answer
            await _send_json(send, status, orjson.dumps(body), request_id, headers)
            return status
        return await self._through_fastapi(scope, receive, send, request_id)

    async def _predict(
        self,
        name: str,
        version: str | None,
        scope: Scope,
        receive: Receive,
        send: Send,
        request_id: str,
    ) -> int:
        headers: dict[str, str] = {}
        try:
            body, headers = await predict_exchange(self._plane, name, version, scope, receive)
            status = 200
        except ServiceError as exc:
            status, headers = exc.status, exc.headers
            body = error_json(exc.code, exc.message, exc.details, request_id)
        except Exception as exc:
            status, body = 500, internal_error(request_id, scope["path"], exc)[1]
        await _send_json(send, status, body, request_id, headers)
        after = scope["state"].pop(AFTER_RESPONSE, None)
        if after is not None:
            after()
        return status

    async def _deny(self, exc: ServiceError, scope: Scope, send: Send, request_id: str) -> int:
        """Answer a 401, 403 or 429 of the guard, in the error shape of the path's protocol."""
        state = scope["state"]
        if "rate_limited" in state:
            self._metrics.rate_limit_hit(state["rate_limited"])
        else:
            self._metrics.auth_failure(state.get("auth_failure", "invalid"))
        path: str = scope["path"]
        if path == "/v2" or path.startswith("/v2/"):
            body = error_body(exc.message)
        else:
            body = error_json(exc.code, exc.message, exc.details, request_id)
        await _send_json(send, exc.status, body, request_id, exc.headers)
        return exc.status

    async def _through_fastapi(
        self, scope: Scope, receive: Receive, send: Send, request_id: str
    ) -> int:
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["x-request-id"] = request_id
                MutableHeaders(scope=message).setdefault("x-content-type-options", "nosniff")
            await send(message)

        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.api(scope, receive, send_with_id)
        finally:
            structlog.contextvars.unbind_contextvars("request_id")
        return status

    @staticmethod
    def _access_log(
        scope: Scope, state: dict[str, Any], status: int, elapsed: float, request_id: str
    ) -> None:
        path = scope["path"]
        fields: dict[str, Any] = {
            "method": scope["method"],
            "path": path,
            "status": status,
            "latency_ms": round(elapsed * 1000, 3),
            "request_id": request_id,
        }
        if "model" in state:
            fields["model"] = state["model"]
            fields["version"] = state.get("version")
        if "api_key" in state:
            fields["api_key"] = state["api_key"]  # the key's name; the key is never kept
        quiet = path in _QUIET_PATHS and status < 400
        emit_record("fastinfer.access", logging.DEBUG if quiet else logging.INFO, "request", fields)


def predict_target(middle: str) -> tuple[str, str | None] | None:
    """`name` or `name/versions/version` (the part of a predict path between its ends)."""
    if "/" not in middle:
        return (middle, None) if middle else None
    name, marker, version = middle.partition("/versions/")
    if marker and name and version and "/" not in name and "/" not in version:
        return name, version
    return None


async def _send_json(
    send: Send, status: int, body: bytes, request_id: str, headers: dict[str, str]
) -> None:
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode("latin-1")),
        (b"x-content-type-options", b"nosniff"),
    ]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _send(
    send: Send, status: int, body: bytes, request_id: str, headers: dict[str, str]
) -> None:
    raw = [
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode("latin-1")),
        (b"x-content-type-options", b"nosniff"),
    ]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    if not any(key == b"content-type" for key, _ in raw):
        raw.append((b"content-type", b"application/json"))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
