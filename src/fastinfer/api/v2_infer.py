"""The v2 infer exchange: Open Inference Protocol tensors (JSON or binary) in and out, through the
data plane. Errors are `{"error": "..."}` with a 4xx/5xx status, as v2 clients expect.

Shared by the hot path (`api.service`) and the FastAPI route that serves cross-origin requests.
"""

from __future__ import annotations

import time

from starlette.types import Receive, Scope

from fastinfer.api.errors import internal_error, v2_error
from fastinfer.api.http import header, read_body
from fastinfer.api.v1_infer import MODEL_VERSION_HEADER, SERVER_TIMING_HEADER
from fastinfer.config import Settings
from fastinfer.context import RequestContext
from fastinfer.dataplane import Answer, DataPlane
from fastinfer.errors import InferenceFailed, ServiceError
from fastinfer.observability.logging import get_logger
from fastinfer.protocols import v2, v2_outputs
from fastinfer.repository.served import ServedModel
from fastinfer.runtimes import Row

log = get_logger("fastinfer.v2")


class V2Exchange:
    """An infer request's tensors → rows; predictions → output tensors (JSON or binary)."""

    __slots__ = ("_receive", "_request", "_scope", "_settings")
    validated = False  # tensors decode to raw rows; the data plane validates them

    def __init__(self, scope: Scope, receive: Receive, settings: Settings) -> None:
        self._scope, self._receive, self._settings = scope, receive, settings
        self._request: v2.InferRequest | None = None

    async def decode(self, model: ServedModel) -> list[Row]:
        assert model.schema is not None and model.runtime is not None
        settings = self._settings
        body = await read_body(
            self._scope, self._receive, settings.max_body_bytes, settings.body_read_timeout_s
        )
        length = v2.parse_header_length(header(self._scope, b"inference-header-content-length"))
        request = v2.decode_infer_request(
            body, length, model.schema.fields, max_rows=model.schema.max_rows
        )
        v2_outputs.check_requested_outputs(
            request.outputs,
            v2_outputs.available_outputs(model.config.output.kind, model.runtime.output_schemas()),
        )
        self._request = request
        return request.rows

    def encode(self, answer: Answer) -> tuple[bytes, dict[str, str]]:
        request, model = self._request, answer.model
        assert request is not None and model.runtime is not None
        encoding = time.perf_counter()
        try:
            tensors = v2_outputs.predictions_to_outputs(
                answer.predictions, model.config.output.kind, model.runtime.output_labels()
            )
        except ValueError as exc:
            log.error("v2_output_encoding_failed", model=model.label, error=str(exc))
            raise InferenceFailed("the model's outputs do not fit a v2 tensor") from None
        body, headers = v2_outputs.encode_infer_response(
            model.name,
            model.version,
            answer.request_id,
            tensors,
            request.outputs,
            request.binary_outputs,
            client_id=request.id,
        )
        headers[MODEL_VERSION_HEADER] = model.version
        headers[SERVER_TIMING_HEADER] = answer.work.server_timing(time.perf_counter() - encoding)
        return body, headers


async def infer_exchange(
    plane: DataPlane,
    name: str,
    version: str | None,
    scope: Scope,
    receive: Receive,
    context: RequestContext,
) -> tuple[int, bytes, dict[str, str]]:
    """Status, body and headers of `POST /v2/models/{name}[/versions/{version}]/infer`."""
    context.protocol = "v2"
    exchange = V2Exchange(scope, receive, plane.settings)
    try:
        body, headers = await plane.infer(
            name, version, exchange, context, header(scope, b"x-request-timeout")
        )
        return 200, body, headers
    except v2.V2TooManyRows as exc:
        return 413, v2_error(str(exc)), {}
    except v2.V2Error as exc:
        return 400, v2_error(str(exc)), {}
    except ServiceError as exc:
        return exc.status, v2_error(exc.message), exc.headers
    except Exception as exc:  # a bug: logged with an error id, never shown to the client
        return 500, internal_error(context.request_id, scope["path"], exc)[1], {}
