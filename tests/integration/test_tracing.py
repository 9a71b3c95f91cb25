"""OpenTelemetry tracing: spans made after the fact, exported over OTLP/HTTP, off by default.

The server tests run a real OTLP/HTTP receiver on loopback (the wire format a collector
accepts) and a real server process pointed at it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import yaml
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from typer.testing import CliRunner

import fastinfer
from fastinfer.cli import app as cli_app
from fastinfer.config import Settings
from fastinfer.context import RequestContext, RpcCall
from fastinfer.engine.work import WorkItem
from fastinfer.observability.tracing import (
    INSTALL_HINT,
    Tracing,
    TracingUnavailableError,
    require_otel,
)
from fastinfer.serving.app import create_app
from tests.conftest import REPO, TITANIC
from tests.integration.otlp import (
    CALLER_SPAN_ID,
    TRACE_ID,
    TRACEPARENT,
    attributes_of,
    receiving,
)
from tests.integration.server import running_server


def titanic_row() -> dict[str, Any]:
    row: dict[str, Any] = yaml.safe_load((TITANIC / "model.yaml").read_text())["example"]
    return row


# -- a real server ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_prediction_is_traced_into_the_callers_trace(
    examples_built: None, tmp_path: Path
) -> None:
    with receiving() as receiver:
        env = {
            "FASTINFER_TRACING": "true",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.url,
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=test",
        }
        args = [str(TITANIC), "--workers", "1"]
        with running_server(args, tmp_path / "log", env=env) as server:
            rows = [titanic_row(), titanic_row()]
            response = httpx.post(
                f"{server.url}/v1/models/titanic/predict",
                json={"inputs": rows},
                headers={"traceparent": TRACEPARENT},
            )
            assert response.status_code == 200, response.text
            pinned = httpx.post(
                f"{server.url}/v1/models/titanic/versions/1.0.0/predict", json={"inputs": rows}
            )
            assert pinned.status_code == 200
            assert httpx.get(f"{server.url}/v1/models").status_code == 200  # a FastAPI route
            health = httpx.get(f"{server.url}/health")  # a probe: untraced
            assert health.status_code == 200
            pid = health.json()["pid"]  # the server process (under the supervisor)
            assert server.stop() == 0  # SIGTERM: the lifespan flushes the buffered spans
        logs = server.logs()
    spans = receiver.spans()
    names = sorted(span.name for _, span in spans)
    assert names == sorted(
        [
            "POST /v1/models/{name}/predict",
            "POST /v1/models/{name}/versions/{version}/predict",
            "GET /v1/models",
            "queue",
            "inference",
            "queue",
            "inference",
        ]
    ), logs
    resource = spans[0][0]
    assert resource["service.name"] == (os.environ.get("OTEL_SERVICE_NAME") or "fastinfer")
    assert resource["service.version"] == fastinfer.__version__
    assert resource["process.pid"] == pid
    assert resource["deployment.environment.name"] == "test"  # OTEL_RESOURCE_ATTRIBUTES

    (request,) = [s for _, s in spans if s.name == "POST /v1/models/{name}/predict"]
    assert request.kind == Span.SpanKind.SPAN_KIND_SERVER
    assert request.trace_id.hex() == TRACE_ID  # joined the caller's trace
    assert request.parent_span_id.hex() == CALLER_SPAN_ID
    attributes = attributes_of(request.attributes)
    assert attributes == {
        "http.request.method": "POST",
        "url.path": "/v1/models/titanic/predict",
        "http.route": "/v1/models/{name}/predict",
        "http.response.status_code": 200,
        "fastinfer.model": "titanic",
        "fastinfer.model_version": "1.0.0",
        "fastinfer.request_id": response.headers["x-request-id"],
    }
    children = {s.name: s for _, s in spans if s.parent_span_id == request.span_id}
    assert set(children) == {"queue", "inference"}
    queue, inference = children["queue"], children["inference"]
    for child in (queue, inference):
        assert child.trace_id == request.trace_id
        assert child.kind == Span.SpanKind.SPAN_KIND_INTERNAL
        assert request.start_time_unix_nano <= child.start_time_unix_nano
        assert child.start_time_unix_nano <= child.end_time_unix_nano
        assert child.end_time_unix_nano <= request.end_time_unix_nano
    assert queue.end_time_unix_nano == inference.start_time_unix_nano  # taken into the batch
    batch = attributes_of(inference.attributes)
    assert batch["fastinfer.batch_rows"] == 2
    assert batch["fastinfer.batch_requests"] == 1
    in_batch = inference.end_time_unix_nano - inference.start_time_unix_nano
    assert 0 < batch["fastinfer.infer_seconds"] * 1e9 <= in_batch
    assert "fastinfer.batch_wait_seconds" in attributes_of(queue.attributes)
    # Within this process's clock, the request lasted about as long as the client saw.
    assert 0 < request.end_time_unix_nano - request.start_time_unix_nano < 5e9
    assert abs(request.end_time_unix_nano - time.time_ns()) < 120e9

    (other,) = [s for _, s in spans if "{version}" in s.name]
    assert other.trace_id.hex() != TRACE_ID  # no traceparent: a trace of its own
    assert not other.parent_span_id


@pytest.mark.slow
def test_nothing_is_exported_by_default(examples_built: None, tmp_path: Path) -> None:
    with receiving() as receiver:
        env = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.url}  # an endpoint, tracing off
        args = [str(TITANIC), "--workers", "1"]
        with running_server(args, tmp_path / "log", env=env) as server:
            response = httpx.post(
                f"{server.url}/v1/models/titanic/predict",
                json={"inputs": [titanic_row()]},
                headers={"traceparent": TRACEPARENT},
            )
            assert response.status_code == 200
            assert server.stop() == 0
        time.sleep(0.2)
    assert receiver.exports == []


_NOT_LOADED = f"""
import sys
from fastapi.testclient import TestClient
from fastinfer.serving.app import create_app
from fastinfer.config import Settings

app = create_app(Settings(model_dirs=[{str(TITANIC)!r}]))
with TestClient(app) as client:
    while client.get("/readyz").status_code != 200:
        pass
    row = {titanic_row()!r}
    assert client.post("/v1/models/titanic/predict", json={{"inputs": [row]}}).status_code == 200
extra = ("opentelemetry.sdk", "opentelemetry.exporter")
print(sorted(m for m in sys.modules if m.startswith(extra)))
"""


def test_tracing_off_never_imports_the_sdk(examples_built: None) -> None:
    # FastAPI itself imports the OpenTelemetry API; the SDK and exporter are the extra's part.
    result = subprocess.run(
        [sys.executable, "-c", _NOT_LOADED],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"  # the lines before are the app's logs


# -- without a server ------------------------------------------------------------------------


def test_a_missing_extra_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tiny_dir: Path) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)  # import now fails
    with pytest.raises(TracingUnavailableError, match=r"the otel extra with `pip install"):
        require_otel()
    monkeypatch.setenv("FASTINFER_TRACING", "true")
    result = CliRunner().invoke(cli_app, ["serve", str(tiny_dir)])
    assert result.exit_code == 2
    assert INSTALL_HINT in result.output  # before any server process started


def _context(path: str, method: str = "POST", **fields: Any) -> RequestContext:
    """A request as the service app makes it: the route table's template for the path."""
    context = RequestContext("r-1", time.perf_counter(), method, path, [])
    match = _TABLE.match(method, path)
    context.route = match.route.template if match is not None else None
    for name, value in fields.items():
        setattr(context, name, value)
    return context


_TABLE = create_app(Settings(), directories=[]).routes


def test_route_templates_keep_span_names_low_cardinality() -> None:
    assert _context("/v1/models/a/predict").route == "/v1/models/{name}/predict"
    assert _context("/v1/models/a/versions/3/predict").route == (
        "/v1/models/{name}/versions/{version}/predict"
    )
    assert _context("/v2/models/a/infer").route == "/v2/models/{name}/infer"
    assert _context("/v2/models/a/versions/3/infer").route == (
        "/v2/models/{name}/versions/{version}/infer"
    )
    assert _context("/v2/models/a/ready", "GET").route == "/v2/models/{name}/ready"
    assert _context("/v1/models/a/b/c/predict").route is None
    assert _context("/no/such/thing", "GET").route is None


def _finished(tracing: Tracing, exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    tracing.shutdown()
    return {span.name: span for span in exporter.get_finished_spans()}


def test_a_server_error_is_an_error_span_and_probes_are_not_traced() -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing(exporter)
    tracing(_context("/v1/models/m/predict", model="m", version="2"), 500, 0.002)
    tracing(_context("/livez", "GET"), 200, 0.001)
    tracing(_context("/nowhere", "GET"), 404, 0.001)
    spans = _finished(tracing, exporter)
    assert set(spans) == {"POST /v1/models/{name}/predict", "GET"}  # unmatched: method only
    failed = spans["POST /v1/models/{name}/predict"]
    assert failed.kind == SpanKind.SERVER
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.attributes is not None and failed.attributes["error.type"] == "500"
    assert failed.start_time is not None and failed.end_time is not None
    assert failed.end_time - failed.start_time == 2_000_000
    assert spans["GET"].status.status_code == StatusCode.UNSET  # a 4xx is the client's error


def test_work_item_times_become_children_inside_the_request() -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing(exporter)
    now = time.monotonic()
    started = time.perf_counter() - 0.010  # arrived 10 ms ago
    item = WorkItem(
        rows=[{}],
        deadline=now + 30,
        request_id="r-1",
        future=None,  # type: ignore[arg-type]
        enqueued_at=now - 0.008,
        started_at=now - 0.006,
        finished_at=now - 0.002,
        batch_wait=0.001,
        infer_seconds=0.003,
        batch_rows=4,
        batch_requests=2,
    )
    context = _context("/v1/models/m/predict", model="m", version="2", timing=item)
    context.started = started
    tracing(context, 200, 0.010)
    spans = _finished(tracing, exporter)
    request, queue, inference = (
        spans["POST /v1/models/{name}/predict"],
        spans["queue"],
        spans["inference"],
    )
    assert queue.parent is not None and queue.parent.span_id == request.context.span_id
    assert inference.parent is not None and inference.parent.span_id == request.context.span_id
    assert request.start_time is not None and request.end_time is not None
    assert queue.start_time is not None and queue.end_time is not None
    assert inference.start_time is not None and inference.end_time is not None
    # Monotonic and perf_counter readings land on one epoch timeline (to a few microseconds).
    assert abs(queue.start_time - request.start_time - 2_000_000) < 100_000
    assert abs(queue.end_time - queue.start_time - 2_000_000) < 1_000
    assert queue.end_time == inference.start_time
    assert abs(inference.end_time - inference.start_time - 4_000_000) < 1_000
    assert request.start_time <= queue.start_time <= inference.end_time <= request.end_time
    assert inference.attributes == {
        "fastinfer.batch_rows": 4,
        "fastinfer.batch_requests": 2,
        "fastinfer.infer_seconds": 0.003,
    }
    assert queue.attributes == {"fastinfer.batch_wait_seconds": 0.001}


def test_a_grpc_call_is_an_rpc_span_and_its_probes_are_not_traced() -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing(exporter)
    service = "inference.GRPCInferenceService"
    headers = [(b"traceparent", TRACEPARENT.encode())]
    infer = _context(f"/{service}/ModelInfer", model="m", version="2", headers=headers)
    infer.rpc = RpcCall(service, "ModelInfer", 14, "UNAVAILABLE")
    tracing(infer, 503, 0.001)
    live = _context(f"/{service}/ServerLive", rpc=RpcCall(service, "ServerLive"))
    tracing(live, 200, 0.001)
    spans = _finished(tracing, exporter)
    assert set(spans) == {f"{service}/ModelInfer"}
    span = spans[f"{service}/ModelInfer"]
    assert span.kind == SpanKind.SERVER
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes == {
        "rpc.system": "grpc",
        "rpc.service": service,
        "rpc.method": "ModelInfer",
        "rpc.grpc.status_code": 14,
        "fastinfer.request_id": "r-1",
        "fastinfer.model": "m",
        "fastinfer.model_version": "2",
        "error.type": "UNAVAILABLE",
    }
