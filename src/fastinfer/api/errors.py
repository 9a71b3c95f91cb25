"""One error shape for every failure: `{code, message, details, request_id}`.

Client errors say exactly what to fix; server errors say only that it failed and which request
it was. Tracebacks go to the log, never to the client.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from fastinfer.api.context import REQUEST_ID_HEADER, request_id_of
from fastinfer.errors import ServiceError, new_error_id
from fastinfer.observability.logging import get_logger

log = get_logger("fastinfer.errors")

_HTTP_CODES = {
    400: "malformed_request",  # the code the predict routes use for a body that does not parse
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    503: "unavailable",
}


class ErrorBody(BaseModel):
    """What every error response holds."""

    code: str = Field(
        description="Stable, machine-readable error code.", examples=["invalid_input"]
    )
    message: str = Field(description="What went wrong, for a person.")
    details: Any = Field(
        default=None, description="Structured specifics, e.g. the row and field of each problem."
    )
    request_id: str = Field(description="Quote it when reporting a problem; it is in the logs.")


def error_json(code: str, message: str, details: Any, request_id: str) -> bytes:
    """The v1 error body: `{code, message, details, request_id}`."""
    return orjson.dumps(
        {"code": code, "message": message, "details": details, "request_id": request_id}
    )


def v2_error(message: str) -> bytes:
    """The Open Inference Protocol's error body, which its clients parse: `{"error": ...}`."""
    return orjson.dumps({"error": message})


def is_v2(path: str) -> bool:
    return path == "/v2" or path.startswith("/v2/")


def service_error_body(path: str, exc: ServiceError, request_id: str) -> bytes:
    """The body of a ServiceError in the error shape of the path's protocol."""
    if is_v2(path):
        return v2_error(exc.message)
    return error_json(exc.code, exc.message, exc.details, request_id)


INTERNAL_MESSAGE = "the server failed to answer this request; quote the error id when reporting it"


def internal_error(request_id: str, path: str, exc: BaseException) -> tuple[str, bytes]:
    """Log an unexpected exception with its traceback and a fresh error id; the id and a
    generic body (no exception text, path or version) are what the client gets."""
    error_id = new_error_id()
    log.error("unhandled_error", error_id=error_id, request_id=request_id, path=path, exc_info=exc)
    if is_v2(path):
        return error_id, v2_error(f"{INTERNAL_MESSAGE} (error id {error_id})")
    body = error_json("internal_error", INTERNAL_MESSAGE, {"error_id": error_id}, request_id)
    return error_id, body


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    *,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """An error for a FastAPI route, in the shape of its protocol."""
    request_id = request_id_of(request.scope)
    all_headers = {REQUEST_ID_HEADER: request_id, **(headers or {})}
    if is_v2(request.url.path):
        body = v2_error(message)
    else:
        body = error_json(code, message, details, request_id)
    return Response(body, status, all_headers, media_type="application/json")


async def _service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    return error_response(
        request, exc.status, exc.code, exc.message, details=exc.details, headers=exc.headers
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route for {request.method} {request.url.path}"
    if exc.status_code == 400 and message == "There was an error parsing the body":
        message = "the body is not valid JSON"
    if exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    return error_response(request, exc.status_code, code, message, headers=exc.headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    details = [
        {"location": [str(p) for p in err.get("loc", ())], "problem": err.get("msg", "")}
        for err in exc.errors()
    ]
    return error_response(
        request, 422, "invalid_request", "the request is not valid", details=details
    )


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    request_id = request_id_of(request.scope)
    _, body = internal_error(request_id, request.url.path, exc)
    headers = {REQUEST_ID_HEADER: request_id}
    return Response(body, 500, headers, media_type="application/json")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)


# What each error status of a predict call means, for the OpenAPI documents.
ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "The body is not valid JSON.",
    404: "No such model.",
    413: "Too many rows, or too large a body.",
    415: "The body is not JSON (send Content-Type: application/json).",
    422: "A row does not match the model's input schema; details name row and field.",
    500: "The model failed on this input.",
    503: "The model is not ready yet, or shed the request (see Retry-After).",
    504: "The request's deadline passed.",
}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in ERROR_DESCRIPTIONS.items()
}
