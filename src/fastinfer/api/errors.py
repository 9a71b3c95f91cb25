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
        description="Stable, machine-readable error code (each error response's example shows "
        "the code of its status)."
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

_EXAMPLE_REQUEST_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def error_example(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """An error body for the OpenAPI documents, so each status shows the code it comes with
    (a client switches on `code`; one example for all taught them the wrong one)."""
    return {"code": code, "message": message, "details": details, "request_id": _EXAMPLE_REQUEST_ID}


# The error a model call gets with each status, as its real message reads (`*_ERRORS` of the
# routes override it where theirs differs).
ERROR_EXAMPLES: dict[int, dict[str, Any]] = {
    400: error_example(
        "malformed_request", "the body is not valid JSON: EOF while parsing an object at line 1"
    ),
    401: error_example(
        "unauthorized", "an API key is required: Authorization: Bearer <key> or X-API-Key: <key>"
    ),
    403: error_example("forbidden", "the API key 'reporting' may not use the model 'titanic'"),
    404: error_example("model_not_found", "no model named 'iris'", {"available": ["titanic"]}),
    408: error_example(
        "request_timeout",
        "the body did not arrive within 30 seconds",
        {"body_read_timeout_s": 30.0},
    ),
    413: error_example(
        "payload_too_large",
        "5000 rows in one request; at most 1024 are accepted",
        {"rows": 5000, "max_rows": 1024},
    ),
    415: error_example(
        "unsupported_media_type",
        "Content-Type must be application/json (got text/plain)",
        {"content_type": "text/plain"},
    ),
    422: error_example(
        "invalid_input",
        "the input does not match the schema of model 'titanic': row 0, field 'age': must be "
        "greater than or equal to 0",
        [
            {
                "row": 0,
                "field": "age",
                "problem": "must be greater than or equal to 0",
                "type": "greater_than_equal",
            }
        ],
    ),
    429: error_example(
        "rate_limited", "the API key 'partner' is over its rate limit of 5 requests/s"
    ),
    500: error_example(
        "inference_failed",
        "model 'titanic' failed on this input (error id 9f86d081884c)",
        {"error_id": "9f86d081884c"},
    ),
    503: error_example(
        "overloaded",
        "model 'titanic' has 1000 requests queued (the limit)",
        {"reason": "queue_full", "queued_requests": 1000, "retry_after_s": 1},
    ),
    504: error_example(
        "deadline_exceeded",
        "the deadline passed while the request was queued; it was not computed",
        {"stage": "queued"},
    ),
}
# FastAPI's own 422, for a path or query parameter or body that does not validate.
REQUEST_INVALID_EXAMPLE = error_example(
    "invalid_request",
    "the request is not valid",
    [{"location": ["query", "version"], "problem": "Input should be a valid string"}],
)


def error_content(example: dict[str, Any]) -> dict[str, Any]:
    """A `responses` entry's content: the ErrorBody model with this example."""
    return {"application/json": {"example": example}}


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {
        "model": ErrorBody,
        "description": description,
        "content": error_content(ERROR_EXAMPLES[status]),
    }
    for status, description in ERROR_DESCRIPTIONS.items()
}
