"""The v1 predict exchange: JSON rows in, JSON predictions out, through the data plane.

Shared by the hot path (`api.service`) and the FastAPI route that serves cross-origin requests.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson
from starlette.types import Receive, Scope

from fastinfer.api.errors import error_json, internal_error
from fastinfer.api.http import check_json_content_type, header, read_body
from fastinfer.config import Settings
from fastinfer.context import RequestContext
from fastinfer.dataplane import Answer, DataPlane
from fastinfer.errors import ServiceError
from fastinfer.observability.logging import get_logger
from fastinfer.repository.served import ServedModel
from fastinfer.runtimes import Row

log = get_logger("fastinfer.v1")
MODEL_VERSION_HEADER = "X-Model-Version"
SERVER_TIMING_HEADER = "Server-Timing"
_LOGGED_BODY_BYTES = 8192


class V1Exchange:
    """`{"inputs": [row, ...]}` → `{"model", "version", "request_id", "predictions"}`."""

    __slots__ = ("_receive", "_scope", "_settings")
    validated = True  # the model's validator parses and validates the bytes in one pass

    def __init__(self, scope: Scope, receive: Receive, settings: Settings) -> None:
        self._scope, self._receive, self._settings = scope, receive, settings

    async def decode(self, model: ServedModel) -> list[Row]:
        assert model.schema is not None  # a servable model has a schema
        check_json_content_type(self._scope)
        settings = self._settings
        body = await read_body(
            self._scope, self._receive, settings.max_body_bytes, settings.body_read_timeout_s
        )
        if settings.log_request_bodies:  # off by default: bodies may hold personal data
            log.debug("request_body", body=body[:_LOGGED_BODY_BYTES].decode("utf-8", "replace"))
        return model.schema.parse_request(body)

    def encode(self, answer: Answer) -> tuple[bytes, dict[str, str]]:
        encoding = time.perf_counter()
        model = answer.model
        body = orjson.dumps(
            {
                "model": model.name,
                "version": model.version,
                "request_id": answer.request_id,
                "predictions": answer.predictions,
            }
        )
        timing = answer.work.server_timing(time.perf_counter() - encoding)
        return body, {MODEL_VERSION_HEADER: model.version, SERVER_TIMING_HEADER: timing}


async def predict_exchange(
    plane: DataPlane,
    name: str,
    version: str | None,
    scope: Scope,
    receive: Receive,
    context: RequestContext,
) -> tuple[int, bytes, dict[str, str]]:
    """Status, body and headers of `POST /v1/models/{name}[/versions/{version}]/predict` (the
    version that computed it, Server-Timing); errors in the v1 shape, as v2's exchange does."""
    context.protocol = "v1"
    exchange = V1Exchange(scope, receive, plane.settings)
    try:
        body, headers = await plane.infer(
            name, version, exchange, context, header(scope, b"x-request-timeout")
        )
        return 200, body, headers
    except ServiceError as exc:
        return (
            exc.status,
            error_json(exc.code, exc.message, exc.details, context.request_id),
            (exc.headers),
        )
    except Exception as exc:  # a bug: logged with an error id, never shown to the client
        return 500, internal_error(context.request_id, scope["path"], exc)[1], {}


async def run_after(after: Callable[[], None]) -> None:
    """A background task for Starlette responses: on the event loop, not its thread pool."""
    after()
