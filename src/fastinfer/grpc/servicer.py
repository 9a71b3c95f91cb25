"""`inference.GRPCInferenceService`: the v2 protocol's calls over gRPC, through the data plane.

Each call is what its REST route is: the same guard (API keys from the `authorization` or
`x-api-key` metadata, the same scopes: probes open, the rest `predict`, repository load/unload
`admin`), `DataPlane.infer` for ModelInfer (so batching with REST requests, admission by the
call's deadline, hooks, the prediction log, drift and versions all apply), the same observers
once answered (access log, metrics with protocol="grpc", tracing), and every refusal mapped to
a gRPC code by `grpc.status`.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

from fastinfer import __version__
from fastinfer.config import Settings
from fastinfer.context import CLIENT_GONE_STATUS, RequestContext, RpcCall
from fastinfer.dataplane import DataPlane
from fastinfer.errors import new_error_id
from fastinfer.grpc.exchange import GrpcExchange
from fastinfer.grpc.proto import grpc_service_pb2 as pb
from fastinfer.grpc.status import REQUEST_ID, Refusal, expected, refusal, status_code
from fastinfer.observability.logging import get_logger
from fastinfer.observability.metrics import Metrics
from fastinfer.protocols import v2
from fastinfer.repository.index import repository_index
from fastinfer.repository.probed import ProbedState, readiness_problems
from fastinfer.security.admin_token import check_admin_token
from fastinfer.security.keys import Access, Guard

log = get_logger("fastinfer.grpc")
SERVICE = "inference.GRPCInferenceService"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")
_NO_DEADLINE_S = 1e8  # time_remaining() of a call without a deadline: effectively forever
Answer = TypeVar("Answer")


class InferenceServicer:
    """One per server process; its methods are the service's RPCs (grpcio's names)."""

    def __init__(
        self,
        plane: DataPlane,
        probed: ProbedState,
        metrics: Metrics,
        guard: Guard | None,
    ) -> None:
        self._plane, self._probed, self._metrics, self._guard = plane, probed, metrics, guard
        self._settings: Settings = plane.settings

    # -- the protocol's calls ------------------------------------------------------------------

    async def ServerLive(  # noqa: N802 - the protocol's method names
        self, request: pb.ServerLiveRequest, call: grpc.aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        async def live(_: RequestContext) -> pb.ServerLiveResponse:
            return pb.ServerLiveResponse(live=not self._probed.engine.stalled())

        return await self._serve("ServerLive", call, Access.OPEN, None, live)

    async def ServerReady(  # noqa: N802
        self, request: pb.ServerReadyRequest, call: grpc.aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        async def ready(_: RequestContext) -> pb.ServerReadyResponse:
            return pb.ServerReadyResponse(ready=not readiness_problems(self._probed))

        return await self._serve("ServerReady", call, Access.OPEN, None, ready)

    async def ServerMetadata(  # noqa: N802
        self, request: pb.ServerMetadataRequest, call: grpc.aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        async def metadata(_: RequestContext) -> pb.ServerMetadataResponse:
            return pb.ServerMetadataResponse(**v2.server_metadata(__version__))

        return await self._serve("ServerMetadata", call, Access.PREDICT, None, metadata)

    async def ModelReady(  # noqa: N802
        self, request: pb.ModelReadyRequest, call: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        async def ready(_: RequestContext) -> pb.ModelReadyResponse:
            __, model = self._plane.version(request.name, request.version or None)
            return pb.ModelReadyResponse(ready=model.serving)

        return await self._serve("ModelReady", call, Access.PREDICT, request.name, ready)

    async def ModelMetadata(  # noqa: N802
        self, request: pb.ModelMetadataRequest, call: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        async def metadata(_: RequestContext) -> pb.ModelMetadataResponse:
            return self._model_metadata(request.name, request.version or None)

        return await self._serve("ModelMetadata", call, Access.PREDICT, request.name, metadata)

    async def ModelInfer(  # noqa: N802
        self, request: pb.ModelInferRequest, call: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        async def infer(context: RequestContext) -> pb.ModelInferResponse:
            context.protocol = "grpc"
            remaining = call.time_remaining()
            if remaining is not None and remaining >= _NO_DEADLINE_S:
                remaining = None  # no deadline: the default request timeout, as REST's
            response: pb.ModelInferResponse = await self._plane.infer(
                request.model_name,
                request.model_version or None,
                GrpcExchange(request),
                context,
                timeout_s=remaining,
            )
            after, context.after_response = context.after_response, None
            if after is not None:  # the post-hooks, once the answer is on its way
                asyncio.get_running_loop().call_soon(after)
            return response

        return await self._serve("ModelInfer", call, Access.PREDICT, request.model_name, infer)

    async def RepositoryIndex(  # noqa: N802
        self, request: pb.RepositoryIndexRequest, call: grpc.aio.ServicerContext
    ) -> pb.RepositoryIndexResponse:
        async def index(_: RequestContext) -> pb.RepositoryIndexResponse:
            probed = self._probed
            entries = repository_index(probed.registry, probed.manager, ready_only=request.ready)
            return pb.RepositoryIndexResponse(
                models=[pb.RepositoryIndexResponse.ModelIndex(**entry) for entry in entries]
            )

        return await self._serve("RepositoryIndex", call, Access.PREDICT, None, index)

    async def RepositoryModelLoad(  # noqa: N802
        self, request: pb.RepositoryModelLoadRequest, call: grpc.aio.ServicerContext
    ) -> pb.RepositoryModelLoadResponse:
        async def load(context: RequestContext) -> pb.RepositoryModelLoadResponse:
            self._check_admin(context)
            await self._probed.manager.load_model(request.model_name)
            return pb.RepositoryModelLoadResponse()

        return await self._serve("RepositoryModelLoad", call, Access.ADMIN, None, load)

    async def RepositoryModelUnload(  # noqa: N802
        self, request: pb.RepositoryModelUnloadRequest, call: grpc.aio.ServicerContext
    ) -> pb.RepositoryModelUnloadResponse:
        async def unload(context: RequestContext) -> pb.RepositoryModelUnloadResponse:
            self._check_admin(context)
            await self._probed.manager.unload(request.model_name, by=context.operator())
            return pb.RepositoryModelUnloadResponse()

        return await self._serve("RepositoryModelUnload", call, Access.ADMIN, None, unload)

    # -- what every call does ----------------------------------------------------------------

    async def _serve(
        self,
        method: str,
        call: grpc.aio.ServicerContext,
        access: Access,
        model: str | None,
        work: Callable[[RequestContext], Awaitable[Answer]],
    ) -> Answer:
        """Check the key, do the work, map a refusal to its code; tell the observers."""
        started = time.perf_counter()
        headers = _headers(call)
        path = f"/{SERVICE}/{method}"
        context = RequestContext(_request_id(headers), started, "POST", path, headers)
        context.route = path
        context.rpc = rpc = RpcCall(SERVICE, method)
        status = 200
        try:
            if self._guard is not None:
                self._guard.check(context, headers, access, model)
            answer = await work(context)
            call.set_trailing_metadata(((REQUEST_ID, context.request_id),))
            return answer
        except asyncio.CancelledError:  # the client cancelled, or its deadline passed
            remaining = call.time_remaining()
            status = 504 if remaining is not None and remaining <= 0 else CLIENT_GONE_STATUS
            raise
        except Exception as exc:
            refused = self._refusal(exc, context)
            status = refused.status
            if context.shed_hold:
                await self._plane.hold_refusal(context.shed_hold)
            await call.abort(refused.code, refused.message, trailing_metadata=refused.metadata)
            raise  # abort raised already
        finally:
            answered = grpc.StatusCode.OK if status < 400 else status_code(status)
            rpc.code, rpc.code_name = answered.value[0], answered.name
            self._plane.answered(context, status, time.perf_counter() - started)

    def _refusal(self, exc: Exception, context: RequestContext) -> Refusal:
        """The call's refusal, counted as REST counts it; a bug is logged with an error id."""
        error_id = new_error_id()
        if not expected(exc):
            log.error(
                "grpc_call_failed",
                error_id=error_id,
                request_id=context.request_id,
                method=context.path,
                exc_info=exc,
            )
        refused = refusal(exc, context.request_id, error_id)
        if context.rate_limited is not None:
            self._metrics.rate_limit_hit(context.rate_limited)
        elif refused.status in (401, 403) and context.auth_failure is not None:
            self._metrics.auth_failure(context.auth_failure)
        return refused

    def _check_admin(self, context: RequestContext) -> None:
        """The admin lock of REST's admin routes: the key's admin scope, else the token."""
        authorization = next(
            (
                value.decode("latin-1")
                for key, value in context.headers or ()
                if key == b"authorization"
            ),
            "",
        )
        scopes = context.api_scopes if self._guard is not None else None
        check_admin_token(self._settings, scopes, authorization)

    def _model_metadata(self, name: str, version: str | None) -> pb.ModelMetadataResponse:
        described = self._plane.v2_metadata(name, version)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=described["name"],
            versions=described["versions"],
            platform=described["platform"],
            inputs=[tensor(**t) for t in described["inputs"]],
            outputs=[tensor(**t) for t in described["outputs"]],
        )


def _headers(call: grpc.aio.ServicerContext) -> list[tuple[bytes, bytes]]:
    """The call's metadata as HTTP/2 headers are (lower-case names, bytes), for the guard."""
    pairs: list[tuple[bytes, bytes]] = []
    for key, value in call.invocation_metadata() or ():
        raw = value if isinstance(value, bytes) else value.encode("latin-1", "replace")
        pairs.append((key.lower().encode("latin-1", "replace"), raw))
    return pairs


def _request_id(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's `x-request-id` if usable, else a new one (as REST's)."""
    for key, value in headers:
        if key == b"x-request-id":
            candidate = value.decode("latin-1")
            if _VALID_REQUEST_ID.match(candidate):
                return candidate
    return secrets.token_hex(16)
