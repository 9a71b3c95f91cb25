"""OpenTelemetry traces of requests: optional (the `otel` extra) and off by default.

A request's spans are made after the fact, once it has been answered, from the clock readings the
server takes anyway (arrival, and the WorkItem's queue and batch times): nothing runs on the
request path while it is served, and with tracing off nothing runs at all. Each traced request
gives a SERVER span joined to the caller's trace (W3C `traceparent`: an HTTP header, or a gRPC
call's metadata) and, for a prediction, a `queue` and an `inference` child. HTTP requests get
HTTP's semantic attributes; gRPC calls RPC's (`rpc.system`, `rpc.service`, `rpc.method`).

Export is OTLP/HTTP through a BatchSpanProcessor (a background thread, so it is made in the
server process's lifespan, after the fork). Endpoint, headers, sampler, service name and resource
attributes come from the standard `OTEL_*` variables, which the SDK reads itself.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from fastinfer import __version__
from fastinfer.context import BatchTiming, RequestContext, RpcCall
from fastinfer.observability.logging import get_logger

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.propagators.textmap import TextMapPropagator
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, SpanKind, Status, Tracer

log = get_logger("fastinfer.tracing")
# fastinfer is not on a package index: name the extra's packages (README: "Installing fastinfer").
INSTALL_HINT = "pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-http"
# Probes and scrapes: frequent, uninteresting, and they would drown the traces that matter.
UNTRACED_PATHS = frozenset({"/livez", "/readyz", "/health", "/metrics", "/favicon.ico"})
UNTRACED_RPCS = frozenset({"ServerLive", "ServerReady"})  # gRPC's probes


class TracingUnavailableError(RuntimeError):
    """Tracing is on, but the OpenTelemetry packages (the `otel` extra) are not installed."""


def require_otel() -> None:
    """Raise TracingUnavailableError, naming the fix, unless the `otel` extra is importable.

    Called at startup when tracing is on, so a missing extra stops the server with a clear
    message rather than failing in every process's lifespan."""
    try:
        import opentelemetry.exporter.otlp.proto.http.trace_exporter
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError as exc:
        raise TracingUnavailableError(
            f"FASTINFER_TRACING is on but OpenTelemetry is not installed ({exc}): "
            f"install the otel extra with `{INSTALL_HINT}`, or turn tracing off"
        ) from exc


class Tracing:
    """One server process's tracer: a provider of its own (the global one is left alone), a
    batch processor and the OTLP/HTTP exporter (or `exporter`: tests, embedding). `shutdown`
    flushes what is still buffered."""

    def __init__(self, exporter: SpanExporter | None = None) -> None:
        require_otel()
        from opentelemetry import propagate, trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import OTELResourceDetector, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        # Our defaults, overridden by OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES.
        resource = Resource.create(
            {
                "service.name": "fastinfer",
                "service.version": __version__,
                **OTELResourceDetector().detect().attributes,
                "process.pid": os.getpid(),
            }
        )
        # The sampler (OTEL_TRACES_SAMPLER, default parent-based always-on) and the exporter's
        # endpoint, headers, timeout and compression (OTEL_EXPORTER_OTLP_*) come from the SDK.
        self._provider: TracerProvider = TracerProvider(resource=resource)
        self._provider.add_span_processor(BatchSpanProcessor(exporter or OTLPSpanExporter()))
        self._tracer: Tracer = self._provider.get_tracer("fastinfer", __version__)
        # OTEL_PROPAGATORS (default: W3C tracecontext and baggage).
        self._propagator: TextMapPropagator = propagate.get_global_textmap()
        self._in_context = trace.set_span_in_context
        self._server: SpanKind = trace.SpanKind.SERVER
        self._error: Status = trace.Status(trace.StatusCode.ERROR)

    def __call__(self, context: RequestContext, status: int, elapsed: float) -> None:
        """A RequestObserver: the spans of a request just answered (`elapsed` seconds after
        `context.started`). Never raises: tracing must not fail a request."""
        try:
            if context.path not in UNTRACED_PATHS and not _probe(context.rpc):
                self._record(context, status, elapsed)
        except Exception:
            log.exception("tracing_failed", path=context.path)

    def _record(self, context: RequestContext, status: int, elapsed: float) -> None:
        # Epoch nanoseconds = a clock's reading + that clock's offset, taken now.
        wall = time.time_ns()
        perf_offset = wall - time.perf_counter_ns()
        mono_offset = wall - time.monotonic_ns()
        start = perf_offset + int(context.started * 1e9)
        end = start + int(elapsed * 1e9)

        name, attributes = _named(context, status)
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in context.headers or ()}
        span = self._tracer.start_span(
            name,
            context=self._propagator.extract(carrier),
            kind=self._server,
            attributes=attributes,
            start_time=start,
        )
        if status >= 500:
            span.set_status(self._error)
        timing = context.timing
        if timing is not None and timing.started_at is not None and span.is_recording():
            self._children(span, timing, mono_offset, start, end)
        span.end(end_time=end)

    def _children(self, parent: Span, item: BatchTiming, offset: int, low: int, high: int) -> None:
        """`queue` and `inference` spans from the WorkItem's monotonic times, kept inside the
        request span (the clocks' offsets are read a few nanoseconds apart)."""

        def epoch(moment: float) -> int:
            return min(max(offset + int(moment * 1e9), low), high)

        assert item.started_at is not None
        context: Context = self._in_context(parent)
        taken = epoch(item.started_at)
        queue = self._tracer.start_span(
            "queue",
            context=context,
            attributes={"fastinfer.batch_wait_seconds": item.batch_wait},
            start_time=epoch(item.enqueued_at),
        )
        queue.end(end_time=taken)
        if item.finished_at is None:  # timed out or failed before the batch came back
            return
        inference = self._tracer.start_span(
            "inference",
            context=context,
            attributes={
                "fastinfer.batch_rows": item.batch_rows,
                "fastinfer.batch_requests": item.batch_requests,
                "fastinfer.infer_seconds": item.infer_seconds,
            },
            start_time=taken,
        )
        inference.end(end_time=epoch(item.finished_at))

    def shutdown(self) -> None:
        """Export what is buffered and stop the export thread (blocks up to the export timeout)."""
        self._provider.shutdown()


def _probe(rpc: RpcCall | None) -> bool:
    return rpc is not None and rpc.method in UNTRACED_RPCS


def _named(context: RequestContext, status: int) -> tuple[str, dict[str, str | int]]:
    """A request span's name and attributes: HTTP's semantic conventions for an HTTP request,
    RPC's for a gRPC call (named `service/method`, with its gRPC status code rather than the
    HTTP status its refusal has in REST)."""
    attributes: dict[str, str | int]
    rpc = context.rpc
    if rpc is not None:
        name = f"{rpc.service}/{rpc.method}"
        attributes = {
            "rpc.system": "grpc",
            "rpc.service": rpc.service,
            "rpc.method": rpc.method,
            "rpc.grpc.status_code": rpc.code,
        }
    else:
        method, route = context.method, context.route  # route: the template, low cardinality
        name = f"{method} {route}" if route is not None else method
        attributes = {
            "http.request.method": method,
            "url.path": context.path,
            "http.response.status_code": status,
        }
        if route is not None:
            attributes["http.route"] = route
    attributes["fastinfer.request_id"] = context.request_id
    if context.model is not None:
        attributes["fastinfer.model"] = context.model
        attributes["fastinfer.model_version"] = context.version or ""
    if status >= 500:
        attributes["error.type"] = rpc.code_name if rpc is not None else str(status)
    return name, attributes
