"""Refusals over real gRPC connections: each REST error's gRPC code and trailing metadata, API
keys from the call's metadata with REST's scopes, the message size limit, the call's deadline
as the request's, metrics with protocol="grpc", and one batch for REST and gRPC rows."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2 as httpx
import numpy as np
import pytest

from fastinfer.security.keys import key_entry
from tests.conftest import CAR, CAR_VALUES, build_scripted_model
from tests.integration.server import free_port, running_server

grpc = pytest.importorskip("grpc")
pytest.importorskip("tritonclient.grpc")
from tritonclient.grpc import service_pb2 as pb  # noqa: E402 - after the skip
from tritonclient.grpc import service_pb2_grpc  # noqa: E402

pytestmark = pytest.mark.slow
READER, OPS = "reader-key-0123456789", "ops-key-0123456789"
BEARER = (("authorization", f"Bearer {READER}"),)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, examples_built: None) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("grpc-errors")
    calls = root / "calls.log"
    scripted = build_scripted_model(
        root / "scripted", batching={"max_batch_size": 64, "max_batch_delay_ms": 300}
    )
    keys = [
        json.loads(key_entry("reader", READER, ["predict"])),
        json.loads(key_entry("ops", OPS, ["predict", "admin"])),
    ]
    env = {
        "FASTINFER_API_KEYS": json.dumps(keys),
        "FASTINFER_MAX_BODY_BYTES": "4096",
        "FASTINFER_MAX_REQUEST_TIMEOUT_S": "0.5",
        "CALL_LOG": str(calls),
    }
    port = free_port()
    args = [str(CAR), str(scripted), "--workers", "1", "--grpc-port", str(port)]
    with running_server(args, root / "server.log", env=env) as running:
        running.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        running.stub = service_pb2_grpc.GRPCInferenceServiceStub(running.channel)
        running.calls = calls
        yield running
        running.channel.close()


def car_request(values: list[str] | None = None, datatype: str = "BYTES") -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="car_evaluation")
    for index, name in enumerate(CAR_VALUES):
        tensor = request.inputs.add(name=name, datatype=datatype, shape=[1])
        value = (values or [v[0] for v in CAR_VALUES.values()])[index]
        if datatype == "BYTES":
            tensor.contents.bytes_contents.append(value.encode())
        else:
            tensor.contents.fp64_contents.append(1.0)
    return request


def scripted_request(x: float, sleep: float = 0.0) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="scripted")
    request.inputs.add(name="x", datatype="FP64", shape=[1]).contents.fp64_contents.append(x)
    request.inputs.add(name="sleep", datatype="FP64", shape=[1]).contents.fp64_contents.append(
        sleep
    )
    return request


def refused(call: Any, *args: Any, **kwargs: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, **kwargs)
    return caught.value


def trailing(error: Any) -> dict[str, str]:
    return dict(error.trailing_metadata() or ())


def test_probes_are_open_and_everything_else_needs_a_key(server: Any) -> None:
    assert server.stub.ServerLive(pb.ServerLiveRequest()).live
    assert server.stub.ServerReady(pb.ServerReadyRequest()).ready
    for call, request in [
        (server.stub.ModelInfer, car_request()),
        (server.stub.ServerMetadata, pb.ServerMetadataRequest()),
        (server.stub.ModelMetadata, pb.ModelMetadataRequest(name="car_evaluation")),
    ]:
        error = refused(call, request)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error.details()
        assert "API key" in error.details()
    wrong = refused(
        server.stub.ModelInfer, car_request(), metadata=(("authorization", "Bearer nope"),)
    )
    assert wrong.code() == grpc.StatusCode.UNAUTHENTICATED
    assert server.stub.ModelInfer(car_request(), metadata=BEARER).outputs
    assert server.stub.ModelInfer(car_request(), metadata=(("x-api-key", READER),)).outputs


def test_the_admin_scope_guards_repository_load_and_unload(server: Any) -> None:
    unload = pb.RepositoryModelUnloadRequest(model_name="car_evaluation")
    error = refused(server.stub.RepositoryModelUnload, unload, metadata=BEARER)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "admin" in error.details()
    index = server.stub.RepositoryIndex(pb.RepositoryIndexRequest(), metadata=BEARER)
    assert ("car_evaluation", "READY") in {(m.name, m.state) for m in index.models}
    ops = (("authorization", f"Bearer {OPS}"),)
    server.stub.RepositoryModelUnload(unload, metadata=ops)
    gone = refused(server.stub.ModelInfer, car_request(), metadata=BEARER)
    assert gone.code() == grpc.StatusCode.NOT_FOUND
    assert "unloaded" in gone.details()
    load = pb.RepositoryModelLoadRequest(model_name="car_evaluation")
    server.stub.RepositoryModelLoad(load, metadata=ops)
    assert server.stub.ModelInfer(car_request(), metadata=BEARER).outputs


def test_rest_errors_map_to_grpc_codes(server: Any) -> None:
    missing = refused(
        server.stub.ModelInfer, pb.ModelInferRequest(model_name="no_such"), metadata=BEARER
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    assert trailing(missing)["fastinfer-error-code"] == "model_not_found"
    assert trailing(missing)["x-request-id"]
    no_version = refused(
        server.stub.ModelReady,
        pb.ModelReadyRequest(name="car_evaluation", version="9"),
        metadata=BEARER,
    )
    assert no_version.code() == grpc.StatusCode.NOT_FOUND
    bad_tensor = refused(server.stub.ModelInfer, car_request(datatype="FP64"), metadata=BEARER)
    assert bad_tensor.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "buying" in bad_tensor.details() and "FP64" in bad_tensor.details()
    bad_value = refused(server.stub.ModelInfer, car_request(["nonsense"] * 6), metadata=BEARER)
    assert bad_value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert trailing(bad_value)["fastinfer-error-code"] == "invalid_input"
    raw = car_request()
    raw.raw_input_contents.append(b"\x00")
    mixed = refused(server.stub.ModelInfer, raw, metadata=BEARER)
    assert mixed.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "raw_input_contents" in mixed.details()
    assert "Traceback" not in mixed.details()


def test_a_message_over_the_body_limit_is_resource_exhausted(server: Any) -> None:
    big = car_request()
    big.id = "x" * 5000  # FASTINFER_MAX_BODY_BYTES is 4096
    error = refused(server.stub.ModelInfer, big, metadata=BEARER)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    small = car_request()
    small.id = "x" * 3000
    assert server.stub.ModelInfer(small, metadata=BEARER).id == small.id


def test_the_calls_deadline_is_the_requests_deadline(server: Any) -> None:
    # The server caps a deadline at FASTINFER_MAX_REQUEST_TIMEOUT_S (0.5 s), as X-Request-
    # Timeout: its own refusal comes long before the client's 10 s (without the call's deadline
    # it would use the 30 s default, and answer after the 2 s sleep).
    started = time.monotonic()
    error = refused(
        server.stub.ModelInfer, scripted_request(1, sleep=2), metadata=BEARER, timeout=10
    )
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert trailing(error)["fastinfer-error-code"] == "deadline_exceeded"
    assert time.monotonic() - started < 2
    short = refused(
        server.stub.ModelInfer, scripted_request(2, sleep=2), metadata=BEARER, timeout=0.2
    )
    assert short.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    time.sleep(2)  # the sleeping batch ends before the next test


def test_rest_and_grpc_rows_share_a_batch_and_grpc_is_counted_as_such(server: Any) -> None:
    http = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {READER}"})
    with ThreadPoolExecutor(2) as pool:
        over_grpc = pool.submit(server.stub.ModelInfer, scripted_request(4.25), metadata=BEARER)
        time.sleep(0.05)  # inside the batch's 300 ms wait
        over_rest = pool.submit(
            http.post, "/v1/models/scripted/predict", json={"inputs": [{"x": 7.75}]}
        )
        response = over_grpc.result(timeout=10)
        assert over_rest.result(timeout=10).status_code == 200
    probabilities = np.frombuffer(response.raw_output_contents[1], dtype="<f8")
    assert probabilities.tolist() == [0.575, 0.425]
    batches = Path(server.calls).read_text().splitlines()
    assert "4.25 7.75" in batches or "7.75 4.25" in batches, batches
    deadline = time.monotonic() + 10
    while True:
        metrics = http.get("/metrics").text
        lines = [line for line in metrics.splitlines() if 'protocol="grpc"' in line]
        if any("fastinfer_requests_total" in line and 'model="scripted"' in line for line in lines):
            break
        assert time.monotonic() < deadline, "no protocol=grpc request metric"
        time.sleep(0.3)
    assert any('status="504"' in line for line in lines), lines
    http.close()
