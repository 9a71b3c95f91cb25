"""The v2 protocol over gRPC with the real Triton client (tritonclient.grpc), against running
server processes that serve REST on their HTTP port and gRPC on their gRPC port.

The whole car grid and the Titanic rows with missing ages must get exactly the REST v2 answers
(tritonclient.http, binary tensors), whether the gRPC request carries binary tensors
(raw_input_contents, the client's way) or typed contents, and whether the answer comes raw or
in typed contents.
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import numpy as np
import pandas as pd
import pytest

from bench.common import TITANIC_V2_DATATYPES
from tests.conftest import CAR, CAR_VALUES, TITANIC
from tests.integration.server import free_port, running_server

grpcclient = pytest.importorskip("tritonclient.grpc")
import grpc  # noqa: E402 - after the skip: the grpc extra may be absent
import tritonclient.http as httpclient  # noqa: E402
from tritonclient.grpc import service_pb2, service_pb2_grpc  # noqa: E402

pytestmark = pytest.mark.slow
_NUMPY = {"BYTES": np.object_, "INT64": np.int64, "FP64": np.float64}
_CONTENTS = {"BYTES": "bytes_contents", "INT64": "int64_contents", "FP64": "fp64_contents"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, examples_built: None) -> Any:
    log = tmp_path_factory.mktemp("grpc") / "server.log"
    port = free_port()
    args = [str(TITANIC), str(CAR), "--workers", "2", "--grpc-port", str(port)]
    with running_server(args, log) as running:
        running.grpc = f"127.0.0.1:{port}"
        yield running


def grpc_input(name: str, datatype: str, values: list[Any], binary: bool) -> Any:
    array = np.array(values, dtype=_NUMPY[datatype])
    tensor = grpcclient.InferInput(name, list(array.shape), datatype)
    if binary:
        tensor.set_data_from_numpy(array)  # raw_input_contents
    else:
        contents = getattr(tensor._get_tensor().contents, _CONTENTS[datatype])
        contents.extend([v.encode() for v in values] if datatype == "BYTES" else array.tolist())
    return tensor


def contents_array(output: Any) -> np.ndarray:
    """An output's typed contents as an array of its shape."""
    if output.datatype == "BYTES":
        values: Any = np.array(list(output.contents.bytes_contents), dtype=np.object_)
    else:
        values = np.array(list(output.contents.fp64_contents), dtype=np.float64)
    array: np.ndarray = values.reshape(list(output.shape))
    return array


def grpc_answers(
    url: str, model: str, columns: dict[str, tuple[str, list[Any]]], *, binary: bool
) -> tuple[list[Any], np.ndarray]:
    """Through tritonclient.grpc (raw tensors both ways); or, `binary` False, the same
    protocol's typed contents both ways (tritonclient cannot ask for those: its stub, then)."""
    inputs = [grpc_input(n, t, v, binary) for n, (t, v) in columns.items()]
    if binary:
        client = grpcclient.InferenceServerClient(url)
        result = client.infer(model, inputs)
        client.close()
        assert len(result.get_response().raw_output_contents) == 2
        return result.as_numpy("label").tolist(), result.as_numpy("probabilities")
    request = service_pb2.ModelInferRequest(model_name=model)
    request.inputs.extend(tensor._get_tensor() for tensor in inputs)
    request.parameters["binary_data_output"].bool_param = False
    with grpc.insecure_channel(url) as channel:
        response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)
    assert not response.raw_output_contents
    outputs = {output.name: contents_array(output) for output in response.outputs}
    return outputs["label"].tolist(), outputs["probabilities"]


def rest_answers(
    url: str, model: str, columns: dict[str, tuple[str, list[Any]]]
) -> tuple[list[Any], np.ndarray]:
    client = httpclient.InferenceServerClient(url.removeprefix("http://"))
    inputs = []
    for name, (datatype, values) in columns.items():
        array = np.array(values, dtype=_NUMPY[datatype])
        tensor = httpclient.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=True)
        inputs.append(tensor)
    result = client.infer(model, inputs)
    client.close()
    return result.as_numpy("label").tolist(), result.as_numpy("probabilities")


def test_every_server_process_serves_grpc(server: Any) -> None:
    """Each worker made its own grpc.aio server after the fork, on the one shared port."""
    deadline = time.monotonic() + 30  # the second may still be loading its models
    while True:
        listening = [line for line in server.logs().splitlines() if "grpc_listening" in line]
        if len(listening) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(listening) == 2, listening
    assert {json.loads(line)["port"] for line in listening} == {int(server.grpc.split(":")[1])}


def test_liveness_readiness_and_metadata(server: Any) -> None:
    client = grpcclient.InferenceServerClient(server.grpc)
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata.name == "fastinfer"
    assert "binary_tensor_data" in metadata.extensions
    assert client.is_model_ready("titanic")
    assert client.is_model_ready("titanic", model_version="1.0.0")
    car = client.get_model_metadata("car_evaluation")
    assert [i.name for i in car.inputs] == list(CAR_VALUES)
    assert {i.datatype for i in car.inputs} == {"BYTES"}
    assert [(o.name, o.datatype) for o in car.outputs] == [
        ("label", "BYTES"),
        ("probabilities", "FP64"),
    ]
    assert list(car.outputs[1].shape) == [-1, 4]
    index = client.get_model_repository_index()
    assert {(m.name, m.state) for m in index.models} >= {
        ("titanic", "READY"),
        ("car_evaluation", "READY"),
    }
    client.close()


@pytest.mark.parametrize("binary", [True, False], ids=["raw", "contents"])
def test_car_grid_over_grpc_equals_rest(server: Any, binary: bool) -> None:
    rows = list(itertools.product(*CAR_VALUES.values()))
    assert len(rows) == 1728
    labels: list[Any] = []
    expected_labels: list[Any] = []
    probabilities, expected = [], []
    for start in range(0, len(rows), 500):
        chunk = rows[start : start + 500]
        columns = {name: ("BYTES", [row[i] for row in chunk]) for i, name in enumerate(CAR_VALUES)}
        got = grpc_answers(server.grpc, "car_evaluation", columns, binary=binary)
        want = rest_answers(server.url, "car_evaluation", columns)
        labels += got[0]
        expected_labels += want[0]
        probabilities.append(got[1])
        expected.append(want[1])
    assert labels == expected_labels
    assert set(labels) == {b"unacc", b"acc", b"good", b"vgood"}
    np.testing.assert_array_equal(np.vstack(probabilities), np.vstack(expected))


@pytest.mark.parametrize("binary", [True, False], ids=["raw", "contents"])
def test_titanic_rows_with_missing_ages_over_grpc_equal_rest(server: Any, binary: bool) -> None:
    frame = pd.read_csv(TITANIC / "holdout.csv").drop(columns=["Survived"])
    frame = frame[frame["Cabin"].notna() & frame["Embarked"].notna()]  # BYTES has no null
    assert frame["Age"].isna().any()  # NaN in FP64 is "missing" for a nullable field
    columns = {
        name: (datatype, frame[name].tolist()) for name, datatype in TITANIC_V2_DATATYPES.items()
    }
    labels, probabilities = grpc_answers(server.grpc, "titanic", columns, binary=binary)
    expected_labels, expected = rest_answers(server.url, "titanic", columns)
    assert labels == expected_labels
    np.testing.assert_array_equal(probabilities, expected)


def test_requested_outputs_and_the_request_id(server: Any) -> None:
    client = grpcclient.InferenceServerClient(server.grpc)
    columns = {name: ("BYTES", [values[0]]) for name, values in CAR_VALUES.items()}
    inputs = [grpc_input(n, t, v, True) for n, (t, v) in columns.items()]
    outputs = [grpcclient.InferRequestedOutput("probabilities")]
    result = client.infer("car_evaluation", inputs, outputs=outputs, request_id="mine-1")
    response = result.get_response()
    assert [o.name for o in response.outputs] == ["probabilities"]
    assert response.id == "mine-1"
    assert response.model_version == "1.0.0"
    assert response.parameters["request_id"].string_param
    client.close()


def test_grpc_port_without_grpcio_is_a_clear_startup_error() -> None:
    """`--grpc-port` where grpcio cannot be imported: exit 2 with the reason, before loading."""
    import subprocess
    import sys

    code = (
        "import importlib.util, sys\n"
        "real = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda n, *a: None if n == 'grpc' else real(n, *a)\n"
        "from fastinfer.cli import main\n"
        "sys.argv = ['fastinfer', 'serve', sys.argv[1], '--grpc-port', '0']\n"
        "main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(CAR)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert "grpcio" in result.stderr and "fastinfer[grpc]" in result.stderr
