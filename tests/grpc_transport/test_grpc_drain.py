"""SIGTERM while gRPC calls are in flight and queued: every one is answered, readiness turns
false during the drain delay, new calls are refused once the drain begins, and the server exits
0 (each worker's grpc.aio server stops with a grace of FASTINFER_DRAIN_TIMEOUT_S)."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import build_scripted_model
from tests.integration.server import free_port, running_server

grpc = pytest.importorskip("grpc")
pytest.importorskip("tritonclient.grpc")
from tritonclient.grpc import service_pb2 as pb  # noqa: E402 - after the skip
from tritonclient.grpc import service_pb2_grpc  # noqa: E402

pytestmark = pytest.mark.slow


def sleeping(x: float, seconds: float) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="scripted")
    request.inputs.add(name="x", datatype="FP64", shape=[1]).contents.fp64_contents.append(x)
    request.inputs.add(name="sleep", datatype="FP64", shape=[1]).contents.fp64_contents.append(
        seconds
    )
    return request


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_answers_every_grpc_call_in_flight_then_exits_0(
    tmp_path: Path, workers: int
) -> None:
    model = build_scripted_model(tmp_path / "scripted", batching={"max_batch_size": 1})
    port = free_port()
    args = [str(model), "--workers", str(workers), "--grpc-port", str(port)]
    env = {"FASTINFER_DRAIN_DELAY_S": "1.0", "FASTINFER_DRAIN_TIMEOUT_S": "20"}
    with running_server(args, tmp_path / "server.log", env=env) as server:
        channels = [grpc.insecure_channel(f"127.0.0.1:{port}") for _ in range(8)]
        stubs = [service_pb2_grpc.GRPCInferenceServiceStub(c) for c in channels]
        probe = stubs[0]
        with ThreadPoolExecutor(8) as pool:
            # 8 calls of 0.4 s, one row per batch: running and queued for ~1.6-3.2 s.
            futures = [
                pool.submit(stub.ModelInfer, sleeping(i, 0.4), timeout=30)
                for i, stub in enumerate(stubs)
            ]
            time.sleep(0.5)
            server.process.send_signal(signal.SIGTERM)
            time.sleep(0.3)  # within the drain delay: still taking calls, no longer ready
            assert not probe.ServerReady(pb.ServerReadyRequest(), timeout=5).ready
            responses = [f.result(timeout=30) for f in futures]
        assert [len(r.outputs) for r in responses] == [2] * 8
        assert server.process.wait(timeout=30) == 0
        with pytest.raises(grpc.RpcError) as caught:
            probe.ServerLive(pb.ServerLiveRequest(), timeout=2)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        for channel in channels:
            channel.close()
    assert "Traceback" not in server.logs()
