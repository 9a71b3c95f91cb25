"""Tracing over gRPC: a ModelInfer call with a `traceparent` metadata entry joins the caller's
trace, as a REST request with the header does, and its span (with RPC's semantic attributes,
its queue and inference children) reaches the same real OTLP/HTTP receiver REST's tests use."""

from __future__ import annotations

from pathlib import Path

import httpx2 as httpx
import pytest

from tests.conftest import build_scripted_model
from tests.integration.otlp import CALLER_SPAN_ID, TRACE_ID, TRACEPARENT, attributes_of, receiving
from tests.integration.server import free_port, running_server

grpc = pytest.importorskip("grpc")
pytest.importorskip("tritonclient.grpc")
pytest.importorskip("opentelemetry.sdk")
from tritonclient.grpc import service_pb2 as pb  # noqa: E402 - after the skip
from tritonclient.grpc import service_pb2_grpc  # noqa: E402

pytestmark = pytest.mark.slow
SERVICE = "inference.GRPCInferenceService"


def scripted_request(x: float) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="scripted")
    request.inputs.add(name="x", datatype="FP64", shape=[1]).contents.fp64_contents.append(x)
    return request


def test_a_grpc_call_joins_the_callers_trace_with_rpc_attributes(tmp_path: Path) -> None:
    model = build_scripted_model(tmp_path / "scripted")
    port = free_port()
    with receiving() as receiver:
        env = {"FASTINFER_TRACING": "true", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.url}
        args = [str(model), "--workers", "1", "--grpc-port", str(port)]
        with running_server(args, tmp_path / "log", env=env) as server:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
                traced = (("traceparent", TRACEPARENT),)
                __, call = stub.ModelInfer.with_call(scripted_request(4.25), metadata=traced)
                request_id = dict(call.trailing_metadata())["x-request-id"]
                with pytest.raises(grpc.RpcError) as missing:
                    stub.ModelInfer(pb.ModelInferRequest(model_name="no_such"))
                assert missing.value.code() == grpc.StatusCode.NOT_FOUND
                assert stub.ServerLive(pb.ServerLiveRequest()).live  # a probe: untraced
            rest = httpx.post(
                f"{server.url}/v1/models/scripted/predict", json={"inputs": [{"x": 1}]}
            )
            assert rest.status_code == 200
            assert server.stop() == 0  # SIGTERM: the lifespan flushes the buffered spans
        logs = server.logs()
    spans = [span for _, span in receiver.spans()]
    names = sorted(span.name for span in spans)
    assert names == sorted(
        [
            f"{SERVICE}/ModelInfer",
            f"{SERVICE}/ModelInfer",
            "POST /v1/models/{name}/predict",
            "queue",
            "inference",
            "queue",
            "inference",
        ]
    ), logs
    (infer,) = [s for s in spans if s.name == f"{SERVICE}/ModelInfer" and s.parent_span_id]
    assert infer.trace_id.hex() == TRACE_ID  # joined the caller's trace
    assert infer.parent_span_id.hex() == CALLER_SPAN_ID
    assert infer.kind == infer.SpanKind.SPAN_KIND_SERVER
    assert attributes_of(infer.attributes) == {
        "rpc.system": "grpc",
        "rpc.service": SERVICE,
        "rpc.method": "ModelInfer",
        "rpc.grpc.status_code": 0,
        "fastinfer.model": "scripted",
        "fastinfer.model_version": "1",
        "fastinfer.request_id": request_id,
    }
    children = {s.name for s in spans if s.parent_span_id == infer.span_id}
    assert children == {"queue", "inference"}
    (refused,) = [s for s in spans if s.name == f"{SERVICE}/ModelInfer" and s != infer]
    assert refused.trace_id.hex() != TRACE_ID  # no traceparent: a trace of its own
    assert attributes_of(refused.attributes)["rpc.grpc.status_code"] == 5  # NOT_FOUND
    (http,) = [s for s in spans if s.name.startswith("POST ")]
    assert "rpc.system" not in attributes_of(http.attributes)  # REST keeps HTTP's attributes
    assert attributes_of(http.attributes)["http.response.status_code"] == 200
