"""The v2 API with the real Triton client from PyPI, against a running server.

Answers through tritonclient (binary tensors, the client's default, and JSON) must equal the
typed v1 API's answers for the same rows.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import httpx2 as httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton

from bench.common import TITANIC_V2_DATATYPES
from tests.conftest import CAR, CAR_VALUES, TITANIC, build_tiny_model
from tests.integration.server import running_server

pytestmark = pytest.mark.slow


def v1_predictions(url: str, model: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    predictions: list[dict[str, Any]] = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for start in range(0, len(rows), 500):
            response = client.post(
                f"/v1/models/{model}/predict", json={"inputs": rows[start : start + 500]}
            )
            assert response.status_code == 200, response.text
            predictions += response.json()["predictions"]
    return predictions


def column_input(name: str, values: list[Any], datatype: str, binary: bool) -> triton.InferInput:
    dtype = {"BYTES": np.object_, "INT64": np.int64, "FP64": np.float64}[datatype]
    array = np.array(values, dtype=dtype)
    tensor = triton.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def infer(
    client: triton.InferenceServerClient,
    model: str,
    columns: dict[str, tuple[str, list[Any]]],
    *,
    binary: bool,
) -> tuple[list[str], np.ndarray]:
    inputs = [column_input(n, v, t, binary) for n, (t, v) in columns.items()]
    outputs = None
    if not binary:
        outputs = [
            triton.InferRequestedOutput("label", binary_data=False),
            triton.InferRequestedOutput("probabilities", binary_data=False),
        ]
    result = client.infer(model, inputs, outputs=outputs)
    labels = [x.decode() if isinstance(x, bytes) else x for x in result.as_numpy("label")]
    return labels, result.as_numpy("probabilities")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, examples_built: None) -> Any:
    log = tmp_path_factory.mktemp("v2") / "server.log"
    with running_server([str(TITANIC), str(CAR), "--workers", "2"], log) as running:
        yield running


def test_health_and_metadata(server: Any) -> None:
    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.get_server_metadata()["name"] == "fastinfer"
    assert client.is_model_ready("titanic")
    assert client.is_model_ready("titanic", model_version="1.0.0")
    metadata = client.get_model_metadata("car_evaluation")
    assert [i["name"] for i in metadata["inputs"]] == list(CAR_VALUES)
    assert {i["datatype"] for i in metadata["inputs"]} == {"BYTES"}
    assert [o["name"] for o in metadata["outputs"]] == ["label", "probabilities"]
    with pytest.raises(triton.InferenceServerException) as caught:
        client.get_model_metadata("no_such_model")
    assert "no_such_model" in str(caught.value)
    client.close()


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_car_grid_through_tritonclient_equals_v1(server: Any, binary: bool) -> None:
    rows = [
        dict(zip(CAR_VALUES, combo, strict=True))
        for combo in itertools.product(*CAR_VALUES.values())
    ]
    expected = v1_predictions(server.url, "car_evaluation", rows)
    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    labels: list[str] = []
    probabilities: list[np.ndarray] = []
    for start in range(0, len(rows), 500):
        chunk = rows[start : start + 500]
        columns = {name: ("BYTES", [r[name] for r in chunk]) for name in CAR_VALUES}
        chunk_labels, chunk_probabilities = infer(client, "car_evaluation", columns, binary=binary)
        labels += chunk_labels
        probabilities.append(chunk_probabilities)
    client.close()
    assert labels == [p["label"] for p in expected]
    order = list(expected[0]["probabilities"])
    table = np.array([[p["probabilities"][c] for c in order] for p in expected])
    np.testing.assert_array_equal(np.vstack(probabilities), table)


def test_titanic_with_missing_ages_equals_v1(server: Any) -> None:
    frame = pd.read_csv(TITANIC / "holdout.csv").drop(columns=["Survived"])
    frame = frame[frame["Cabin"].notna() & frame["Embarked"].notna()]  # BYTES has no null
    assert frame["Age"].isna().any()  # NaN in FP64 is "missing" for a nullable field
    rows = []
    for record in frame.to_dict(orient="records"):
        rows.append(
            {k: v for k, v in record.items() if not (isinstance(v, float) and math.isnan(v))}
        )
    expected = v1_predictions(server.url, "titanic", rows)
    columns = {
        name: (datatype, frame[name].tolist()) for name, datatype in TITANIC_V2_DATATYPES.items()
    }
    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    labels, probabilities = infer(client, "titanic", columns, binary=True)
    client.close()
    assert labels == [p["label"] for p in expected]
    np.testing.assert_array_equal(
        probabilities[:, 1], [p["probabilities"]["survived"] for p in expected]
    )


def test_tritonclient_sees_clear_errors(server: Any, tmp_path: Path) -> None:
    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    columns = {name: ("BYTES", ["nonsense"]) for name in CAR_VALUES}
    with pytest.raises(triton.InferenceServerException) as caught:
        infer(client, "car_evaluation", columns, binary=True)
    assert "buying" in str(caught.value)
    client.close()


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_one_fp32_matrix_through_tritonclient_equals_per_input_tensors(
    tmp_path: Path, binary: bool
) -> None:
    """The [N, F] FP32 tensor sklearn users send: the same answers as per-input tensors."""
    model = build_tiny_model(tmp_path / "tiny")
    matrix = np.array([[0.1, 0], [6.7, 1], [3.3, 1], [1e-7, 0], [4.2, 1]], dtype=np.float32)
    with running_server([str(model)], tmp_path / "server.log") as running:
        client = triton.InferenceServerClient(url=running.url.removeprefix("http://"))
        batched = client.get_model_metadata("tiny")["parameters"]["batched_input"]
        assert batched["shape"] == [-1, 2] and batched["columns"] == ["x", "colour"]
        outputs = [
            triton.InferRequestedOutput("label", binary_data=binary),
            triton.InferRequestedOutput("probabilities", binary_data=binary),
        ]
        one = triton.InferInput("input__0", list(matrix.shape), "FP32")
        one.set_data_from_numpy(matrix, binary_data=binary)
        x = triton.InferInput("x", [len(matrix)], "FP32")
        x.set_data_from_numpy(matrix[:, 0].copy(), binary_data=binary)
        colour = triton.InferInput("colour", [len(matrix)], "INT64")
        colour.set_data_from_numpy(matrix[:, 1].astype(np.int64), binary_data=binary)
        from_matrix = client.infer("tiny", [one], outputs=outputs)
        from_columns = client.infer("tiny", [x, colour], outputs=outputs)
        wrong = triton.InferInput("input__0", [1, 3], "FP32")
        wrong.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32), binary_data=binary)
        with pytest.raises(triton.InferenceServerException) as caught:
            client.infer("tiny", [wrong])
        client.close()
    assert "[N, 2]" in str(caught.value)
    np.testing.assert_array_equal(
        from_matrix.as_numpy("probabilities"), from_columns.as_numpy("probabilities")
    )
    assert from_matrix.as_numpy("label").tolist() == from_columns.as_numpy("label").tolist()
