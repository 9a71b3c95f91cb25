"""The ASGI entry point of a server process.

Every request is matched once against the route table (`api.routes`); the guard checks the key
against the access the route declares. The routes that carry the load — predict, infer and the
probes — are then served here in plain ASGI, without FastAPI's routing, dependency and
middleware layers (several times the cost of the work itself for a one-row request). Everything
else goes through FastAPI, which also documents every route. Every response gets an
`X-Request-ID`; once answered, the data plane tells the observers (access log, metrics, tracing).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import orjson
import structlog
from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.types import Message, Receive, Scope, Send

from fastinfer.api.context import incoming_request_id
from fastinfer.api.errors import service_error_body
from fastinfer.api.http import header, read_body, send_json
from fastinfer.api.probes import ProbeAnswer, liveness, readiness
from fastinfer.api.routes import ADMIN, PREDICT, Match, RouteTable
from fastinfer.api.v1_infer import predict_exchange
from fastinfer.api.v2_infer import infer_exchange
from fastinfer.context import CLIENT_GONE, CLIENT_GONE_STATUS, RequestContext
from fastinfer.dataplane import DataPlane
from fastinfer.errors import ServiceError
from fastinfer.observability.metrics import Metrics
from fastinfer.repository.probed import ProbedState
from fastinfer.security.admin_token import check_admin_token

if TYPE_CHECKING:
    from fastinfer.security.keys import Guard

V1_PREDICT = "/v1/models/{name}/predict"
V1_VERSION_PREDICT = "/v1/models/{name}/versions/{version}/predict"
V2_INFER = "/v2/models/{name}/infer"
V2_VERSION_INFER = "/v2/models/{name}/versions/{version}/infer"
_V1_ROUTES = frozenset({V1_PREDICT, V1_VERSION_PREDICT})
_PROBES = {"/livez": liveness, "/readyz": readiness}

Hot = Callable[["ServiceApp", Match, Scope, Receive, Send, RequestContext], Awaitable[int]]


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
        self.routes = RouteTable.of_app(api)
        self._probed = ProbedState.of(api.state)
        self._hot: dict[str, Hot] = {
            V1_PREDICT: ServiceApp._exchange,
            V1_VERSION_PREDICT: ServiceApp._exchange,
            V2_INFER: ServiceApp._exchange,
            V2_VERSION_INFER: ServiceApp._exchange,
            "/livez": ServiceApp._probe,
            "/readyz": ServiceApp._probe,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.api(scope, receive, send)
            return
        started = time.perf_counter()
        context = RequestContext.of_scope(scope, incoming_request_id(scope), started)
        status = 500
        try:
            match = self.routes.match(scope["method"], scope["path"])
            if match is not None:
                context.route = match.route.template
            if self.guard is not None:
                try:
                    access = match.route.access if match is not None else PREDICT
                    # The model a key may be limited to: the one a predict route names.
                    model = match.model if match is not None and access is PREDICT else None
                    self.guard.check(context, scope["headers"], access, model)
                except ServiceError as exc:
                    status = await self._deny(exc, scope, send, context)
                    return
            status = await self._dispatch(match, scope, receive, send, context)
        finally:
            self._plane.answered(context, status, time.perf_counter() - started)

    async def _dispatch(
        self,
        match: Match | None,
        scope: Scope,
        receive: Receive,
        send: Send,
        context: RequestContext,
    ) -> int:
        hot = self._hot.get(match.route.template) if match is not None else None
        cross_origin = self._cors and header(scope, b"origin") is not None
        if hot is not None and match is not None and not cross_origin:
            return await hot(self, match, scope, receive, send, context)
        if hot is None:  # predict/infer read their bodies themselves, under max_body_bytes
            try:
                if match is not None and match.route.access is ADMIN and self.guard is None:
                    settings = self._plane.settings
                    check_admin_token(settings, None, header(scope, b"authorization") or "")
                receive = await self._bounded_body(scope, receive)
            except ServiceError as exc:
                return await self._deny(exc, scope, send, context)
        return await self._through_fastapi(scope, receive, send, context)

    async def _bounded_body(self, scope: Scope, receive: Receive) -> Receive:
        """The body of a control route read in full under `max_control_body_bytes` (413 at
        once, memory flat), handed to FastAPI as if it were arriving (authenticated first)."""
        if scope["method"] in ("GET", "HEAD", "OPTIONS") and not _has_body(scope):
            return receive
        settings = self._plane.settings
        body = await read_body(
            scope, receive, settings.max_control_body_bytes, settings.body_read_timeout_s
        )
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()  # the client's disconnect, when it comes
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return replay

    async def _exchange(
        self, match: Match, scope: Scope, receive: Receive, send: Send, context: RequestContext
    ) -> int:
        """v1 predict or v2 infer: the protocol's exchange answers in its own error shape."""
        exchange = predict_exchange if context.route in _V1_ROUTES else infer_exchange
        name, version = match.params["name"], match.params.get("version")
        context.cancel_on_disconnect = True
        try:
            status, body, headers = await exchange(
                self._plane, name, version, scope, receive, context
            )
            if context.shed_hold:
                await self._plane.hold_refusal(context.shed_hold)
        except asyncio.CancelledError as cancelled:
            if cancelled.args != (CLIENT_GONE,):
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # ours to handle: nobody is left to answer
            return CLIENT_GONE_STATUS
        finally:
            context.cancel_on_disconnect = False
        if context.rate_headers is not None:
            headers = {**headers, **context.rate_headers}
        await send_json(send, status, body, context.request_id, headers)
        _run_after_response(context)
        return status

    async def _probe(
        self, match: Match, scope: Scope, receive: Receive, send: Send, context: RequestContext
    ) -> int:
        answer: ProbeAnswer = _PROBES[match.route.template](self._probed, context.request_id)
        status, body, headers = answer
        await send_json(send, status, orjson.dumps(body), context.request_id, headers)
        return status

    async def _deny(
        self, exc: ServiceError, scope: Scope, send: Send, context: RequestContext
    ) -> int:
        """Answer a refusal made before any route ran (401, 403, 429 of the guard; 413 or 408
        of a control route's body), in the error shape of the path's protocol."""
        if context.rate_limited is not None:
            self._metrics.rate_limit_hit(context.rate_limited)
        elif exc.status in (401, 403):
            self._metrics.auth_failure(context.auth_failure or "invalid")
        body = service_error_body(scope["path"], exc, context.request_id)
        headers = exc.headers
        if context.rate_headers is not None:  # a daily quota's 429 also says the rate's state
            headers = {**context.rate_headers, **headers}
        await send_json(send, exc.status, body, context.request_id, headers)
        return exc.status

    async def _through_fastapi(
        self, scope: Scope, receive: Receive, send: Send, context: RequestContext
    ) -> int:
        status = 500
        request_id = context.request_id

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers["x-request-id"] = request_id
                headers.setdefault("x-content-type-options", "nosniff")
                if context.rate_headers is not None:
                    headers.update(context.rate_headers)
            await send(message)

        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.api(scope, receive, send_with_id)
        finally:
            structlog.contextvars.unbind_contextvars("request_id")
        return status


def _has_body(scope: Scope) -> bool:
    for key, value in scope["headers"]:
        if (key == b"content-length" and value.strip() not in (b"", b"0")) or (
            key == b"transfer-encoding"
        ):
            return True
    return False


def _run_after_response(context: RequestContext) -> None:
    after, context.after_response = context.after_response, None
    if after is not None:
        after()
