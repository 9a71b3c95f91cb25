"""The refusals that protect a server, over a live gRPC connection to a real server process: a
key over its rate limit, a full queue, and a model failing on one row of a shared batch. Each
is the gRPC code `grpc.status` maps REST's status to, with REST's Retry-After as `retry-after`
trailing metadata and its error code as `fastinfer-error-code`; what was admitted is answered."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fastinfer.security.keys import key_entry
from tests.conftest import build_scripted_model
from tests.integration.server import free_port, running_server

grpc = pytest.importorskip("grpc")
pytest.importorskip("tritonclient.grpc")
from tritonclient.grpc import service_pb2 as pb  # noqa: E402 - after the skip
from tritonclient.grpc import service_pb2_grpc  # noqa: E402

pytestmark = pytest.mark.slow
READER, LIMITED = "reader-key-0123456789", "limited-key-0123456789"
BEARER = (("authorization", f"Bearer {READER}"),)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("grpc-overload")
    calls = root / "calls.log"
    # `scripted` batches for 300 ms (a bad row meets good ones); `narrow` runs one row at a
    # time and queues at most two requests.
    shared = build_scripted_model(
        root / "scripted", batching={"max_batch_size": 64, "max_batch_delay_ms": 300}
    )
    narrow = build_scripted_model(
        root / "narrow", name="narrow", batching={"max_batch_size": 1, "max_queue_size": 2}
    )
    keys = [
        json.loads(key_entry("reader", READER, ["predict"])),
        json.loads(key_entry("limited", LIMITED, ["predict"], rate=0.1, burst=1)),
    ]
    env = {
        "FASTINFER_API_KEYS": json.dumps(keys),
        "FASTINFER_SHED_HOLD_S": "0",  # refusals sent at once (their hold is REST's, tested there)
        "CALL_LOG": str(calls),
    }
    port = free_port()
    args = [str(shared), str(narrow), "--workers", "1", "--grpc-port", str(port)]
    with running_server(args, root / "server.log", env=env) as running:
        running.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        running.stub = service_pb2_grpc.GRPCInferenceServiceStub(running.channel)
        running.calls = calls
        yield running
        running.channel.close()


def request(x: float, sleep: float = 0.0, model: str = "scripted") -> pb.ModelInferRequest:
    infer = pb.ModelInferRequest(model_name=model)
    infer.inputs.add(name="x", datatype="FP64", shape=[1]).contents.fp64_contents.append(x)
    infer.inputs.add(name="sleep", datatype="FP64", shape=[1]).contents.fp64_contents.append(sleep)
    return infer


def probabilities(response: pb.ModelInferResponse) -> list[float]:
    values: list[float] = np.frombuffer(response.raw_output_contents[1], dtype="<f8").tolist()
    return values


def outcome(stub: Any, infer: pb.ModelInferRequest) -> Any:
    """The response, or the RpcError the call ended with."""
    try:
        return stub.ModelInfer(infer, metadata=BEARER, timeout=30)
    except grpc.RpcError as error:
        return error


def trailing(error: Any) -> dict[str, str]:
    return dict(error.trailing_metadata() or ())


def batches(server: Any) -> list[list[float]]:
    """The model's calls so far, each the x values of one batch."""
    lines = Path(server.calls).read_text().splitlines()
    return [[float(x) for x in line.split()] for line in lines]


def seen(server: Any) -> set[float]:
    """Every x value the model was called with."""
    return {x for batch in batches(server) for x in batch}


def test_a_key_over_its_rate_limit_is_resource_exhausted_with_retry_after(server: Any) -> None:
    limited = (("x-api-key", LIMITED),)
    assert server.stub.ModelInfer(request(1), metadata=limited).outputs  # the burst of 1
    with pytest.raises(grpc.RpcError) as caught:
        server.stub.ModelInfer(request(2), metadata=limited)
    error = caught.value
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
    metadata = trailing(error)
    assert metadata["fastinfer-error-code"] == "rate_limited"
    assert 1 <= int(metadata["retry-after"]) <= 10  # a token every 10 s
    assert metadata["x-request-id"]
    assert server.stub.ModelInfer(request(3), metadata=BEARER).outputs  # other keys unaffected
    assert 2.0 not in seen(server)  # refused before the model saw it


def test_a_full_queue_sheds_with_unavailable_and_the_admitted_calls_are_answered(
    server: Any,
) -> None:
    with ThreadPoolExecutor(8) as pool:
        busy = pool.submit(outcome, server.stub, request(1.5, sleep=1.0, model="narrow"))
        deadline = time.monotonic() + 10
        while [1.5] not in batches(server):  # the only worker is busy with it
            assert time.monotonic() < deadline, "the busy call never started"
            time.sleep(0.01)
        queued = [pool.submit(outcome, server.stub, request(x, model="narrow")) for x in (2.5, 3.5)]
        time.sleep(0.2)  # both queued: the queue is full
        started = time.monotonic()
        shed = list(pool.map(lambda x: outcome(server.stub, request(x, model="narrow")), (8, 9)))
        assert time.monotonic() - started < 0.8  # refused at the door, not after the wait
        answered = [busy.result(), *(f.result() for f in queued)]
    for error in shed:
        assert isinstance(error, grpc.RpcError), "a call over a full queue was admitted"
        assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()
        metadata = trailing(error)
        assert metadata["fastinfer-error-code"] == "overloaded"
        assert int(metadata["retry-after"]) >= 1
    for response, x in zip(answered, (1.5, 2.5, 3.5), strict=True):
        assert not isinstance(response, grpc.RpcError), response.details()
        assert probabilities(response) == pytest.approx([1 - x / 10, x / 10])
    assert not {8.0, 9.0} & seen(server)  # shed before they reached the model


def test_a_row_the_model_fails_on_fails_only_its_own_call(server: Any) -> None:
    with ThreadPoolExecutor(2) as pool:
        bad = pool.submit(outcome, server.stub, request(13))  # the model raises on x == 13
        time.sleep(0.05)  # inside the batch's 300 ms wait
        good = pool.submit(outcome, server.stub, request(4.25))
        error, response = bad.result(), good.result()
    assert [13.0, 4.25] in batches(server) or [4.25, 13.0] in batches(server)  # one batch
    assert not isinstance(response, grpc.RpcError), response.details()
    assert probabilities(response) == [0.575, 0.425]
    assert isinstance(error, grpc.RpcError)
    assert error.code() == grpc.StatusCode.INTERNAL, error.details()
    assert "error id" in error.details()
    assert "Traceback" not in error.details() and "scripted failure" not in error.details()
    metadata = trailing(error)
    assert metadata["fastinfer-error-code"] == "inference_failed"
    assert metadata["x-request-id"]
    assert "retry-after" not in metadata
