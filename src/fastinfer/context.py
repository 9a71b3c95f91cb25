"""What one request carries on its way through the layers: a typed record, not string keys.

The transport makes it when a request arrives and keeps it in the ASGI scope under one key;
security notes who called, the data plane notes which version answered and how long its batch
took, and observers (access log, metrics, tracing) read it once the request is answered. It
lives at the bottom of the package so that every layer can use it and none imports `api/`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.types import Scope

SCOPE_KEY = "fastinfer.context"  # the scope's key (namespaced, as ASGI extensions are)
# The message a request's task is cancelled with when its client disconnects (see
# RequestContext.cancel_on_disconnect); 499 is what the access log and metrics then record.
CLIENT_GONE = "fastinfer: the client disconnected"
CLIENT_GONE_STATUS = 499


class BatchTiming(Protocol):
    """Where a prediction's time went (the engine's WorkItem has these, in monotonic seconds)."""

    @property
    def enqueued_at(self) -> float: ...
    @property
    def started_at(self) -> float | None: ...
    @property
    def finished_at(self) -> float | None: ...
    @property
    def batch_wait(self) -> float: ...
    @property
    def infer_seconds(self) -> float: ...
    @property
    def batch_rows(self) -> int: ...
    @property
    def batch_requests(self) -> int: ...


@dataclass(slots=True)
class RpcCall:
    """A gRPC call's name and answer, for observers that describe calls as calls (tracing's
    `rpc.*` attributes): its HTTP-like status alone would call every refusal a POST's."""

    service: str  # e.g. inference.GRPCInferenceService
    method: str  # e.g. ModelInfer
    code: int = 0  # the gRPC status code's number once answered (0: OK)
    code_name: str = "OK"


@dataclass(slots=True, eq=False)
class RequestContext:
    """One request, as far as the service has taken it."""

    request_id: str
    started: float  # time.perf_counter() at arrival
    method: str = "GET"
    path: str = ""
    headers: list[tuple[bytes, bytes]] | None = None  # the raw request headers (trace context)
    route: str | None = None  # the matched route's template, e.g. /v1/models/{name}/predict
    protocol: str | None = None  # "v1" or "v2" for a prediction
    model: str | None = None  # the model version that took the request, once resolved
    version: str | None = None
    timing: BatchTiming | None = None  # the engine's record of the prediction's batch
    api_key: str | None = None  # the name of the key presented (never the key)
    api_scopes: frozenset[str] | None = None
    auth_failure: str | None = None  # missing, invalid, scope, model: why a 401/403
    rate_limited: str | None = None  # the key whose rate or quota refused the request
    # X-RateLimit-* of a rate-limited key, set by the guard; every answer to the request sends
    # them (None, and nothing to add, for requests without such a key).
    rate_headers: dict[str, str] | None = None
    after_response: Callable[[], None] | None = None  # post-hooks, run once the answer is sent
    # A prediction: if its client goes away, the connection cancels it (queued rows are then
    # never computed). Never set for changes (a model load must not stop half-way).
    cancel_on_disconnect: bool = False
    # Shed under overload: how long the transport holds the 503 before sending it (see
    # DataPlane.infer), so clients that retry at once cannot spend the capacity on refusals.
    shed_hold: float = 0.0
    rpc: RpcCall | None = None  # a gRPC call (None: an HTTP request)

    @classmethod
    def of_scope(cls, scope: Scope, request_id: str, started: float) -> RequestContext:
        """A new context for `scope`, stored in it (FastAPI routes find it there)."""
        context = cls(request_id, started, scope["method"], scope["path"], scope["headers"])
        scope[SCOPE_KEY] = context
        return context

    def operator(self) -> str:
        """Who asked for a change, for the record an unload leaves: the API key's name, else
        the admin token (the one credential without a name)."""
        return f"api key {self.api_key!r}" if self.api_key else "admin token"


def context_of(scope: Scope) -> RequestContext | None:
    """The context the transport stored in `scope`; None for a scope it never saw (tests)."""
    context: Any = scope.get(SCOPE_KEY)
    return context if isinstance(context, RequestContext) else None


class RequestObserver(Protocol):
    """Told about every answered request (access log, metrics, tracing): cheap, never raises."""

    def __call__(self, context: RequestContext, status: int, elapsed: float) -> None: ...
