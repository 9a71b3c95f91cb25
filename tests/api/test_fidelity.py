"""One set of input rules on both protocols (issue 13): what v1 refuses, v2 refuses, each with a
4xx naming the row and field, never a 500 and never a 200 the model did not mean."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.linear_model import LinearRegression

from fastinfer.protocols.v2 import HEADER_LENGTH_HEADER
from tests.conftest import serve_in_process, sha256_of, wait_ready, write_config
from tests.unit.test_onnx_runtime import model_dir, softmax_classifier, tabular_regressor
from tests.unit.test_v2_codec import client_body, client_input, client_result

PASSENGER: dict[str, Any] = {
    "PassengerId": 2,
    "Pclass": 1,
    "Name": "Cumings, Mrs. John Bradley (Florence Briggs Thayer)",
    "Sex": "female",
    "SibSp": 1,
    "Parch": 0,
    "Ticket": "PC 17599",
    "Fare": 71.2833,
}
DATATYPES = {
    "PassengerId": "INT64",
    "Pclass": "INT64",
    "Name": "BYTES",
    "Sex": "BYTES",
    "SibSp": "INT64",
    "Parch": "INT64",
    "Ticket": "BYTES",
    "Fare": "FP64",
}


def v1(client: TestClient, row: dict[str, Any]) -> Any:
    body = json.dumps({"inputs": [PASSENGER, row]})  # json: orjson refuses ints beyond 64 bits
    return client.post(
        "/v1/models/titanic/predict", content=body, headers={"content-type": "application/json"}
    )


def v2_json(client: TestClient, name: str, datatype: str, value: Any) -> Any:
    inputs = [
        {"name": n, "datatype": d, "shape": [2], "data": [PASSENGER[n], PASSENGER[n]]}
        for n, d in DATATYPES.items()
        if n != name
    ]
    inputs.append(
        {"name": name, "datatype": datatype, "shape": [2], "data": [PASSENGER[name], value]}
    )
    body = json.dumps({"inputs": inputs})
    return client.post(
        "/v2/models/titanic/infer", content=body, headers={"content-type": "application/json"}
    )


def v2_binary(client: TestClient, name: str, array: np.ndarray, datatype: str) -> Any:
    tensors = [
        client_input(n, np.array([PASSENGER[n]] * 2, dtype=_numpy(d)), d, binary=True)
        for n, d in DATATYPES.items()
        if n != name
    ]
    tensors.append(client_input(name, array, datatype, binary=True))
    body, header_length = client_body(tensors)
    headers = {"Inference-Header-Content-Length": str(header_length)}
    return client.post("/v2/models/titanic/infer", content=body, headers=headers)


def _numpy(datatype: str) -> Any:
    return {"INT64": np.int64, "FP64": np.float64, "BYTES": np.object_}[datatype]


def refused_v1(response: Any, field: str, problem: str) -> None:
    assert response.status_code == 422, response.text
    details = {(d["row"], d["field"]): d["problem"] for d in response.json()["details"]}
    assert details == {(1, field): problem}


def refused_v2(response: Any, status: int, *names: str) -> None:
    assert response.status_code == status, response.text
    for name in names:
        assert name in response.json()["error"]


@pytest.mark.parametrize("value", [True, 1.0, 3.0])
def test_an_integer_choice_takes_integers_only_on_both_protocols(
    examples_client: TestClient, value: Any
) -> None:
    """`Pclass` (integer, allowed [1, 2, 3]): v1 took `true` as class 1 and 1.0 as 1."""
    refused_v1(
        v1(examples_client, {**PASSENGER, "Pclass": value}), "Pclass", "must be a valid integer"
    )
    datatype = "BOOL" if isinstance(value, bool) else "FP64"
    response = v2_json(examples_client, "Pclass", datatype, value)
    refused_v2(response, 400, "'Pclass'", f"datatype {datatype}")


def test_integers_beyond_int64_are_422_naming_row_and_field(examples_client: TestClient) -> None:
    """`PassengerId` has no maximum: 2**63 was an OverflowError (500) on v1 and v2 UINT64."""
    problem = "must be less than or equal to 9223372036854775807"
    refused_v1(v1(examples_client, {**PASSENGER, "PassengerId": 2**63}), "PassengerId", problem)
    where = "row 1, field 'PassengerId'"
    refused_v2(v2_json(examples_client, "PassengerId", "UINT64", 2**63), 422, where, problem)
    array = np.array([2, 2**63], dtype=np.uint64)
    refused_v2(v2_binary(examples_client, "PassengerId", array, "UINT64"), 422, where, problem)
    largest = np.array([2, 2**63 - 1], dtype=np.uint64)
    assert v2_binary(examples_client, "PassengerId", largest, "UINT64").status_code == 200
    assert v1(examples_client, {**PASSENGER, "PassengerId": 2**63 - 1}).status_code == 200


@pytest.fixture(scope="module")
def onnx_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """A float32 graph: x [N,8] → softmax probabilities, and a float32 scalar column."""
    root = tmp_path_factory.mktemp("onnx")
    classifier = model_dir(
        root / "softmax", "softmax", softmax_classifier(), output={"kind": "classifier"}
    )
    tabular = model_dir(
        root / "tabular", "tabular", tabular_regressor(), output={"kind": "regressor"}
    )
    with serve_in_process(classifier, tabular) as client:
        wait_ready(client)
        yield client


def test_float32_inputs_refuse_what_float32_cannot_hold(onnx_client: TestClient) -> None:
    """3.5e38 was read as inf by the float32 graph: a 200 with null probabilities."""
    rows = [{"x": [0.5] * 8}, {"x": [0.5] * 7 + [3.5e38]}]
    response = onnx_client.post("/v1/models/softmax/predict", json={"inputs": rows})
    assert response.status_code == 422, response.text
    (problem,) = response.json()["details"]
    assert (problem["row"], problem["field"]) == (1, "x[7]")
    assert problem["problem"].startswith("is beyond float32's range (±3.4028235e+38)")
    tensor = {"name": "x", "datatype": "FP64", "shape": [2, 8], "data": [r["x"] for r in rows]}
    response = onnx_client.post("/v2/models/softmax/infer", json={"inputs": [tensor]})
    refused_v2(response, 422, "row 1, field 'x[7]'", "float32")
    row = {"age": -1e39, "count": 1, "colour": "red"}
    response = onnx_client.post("/v1/models/tabular/predict", json={"inputs": [row]})
    assert response.status_code == 422, response.text
    assert [(p["row"], p["field"]) for p in response.json()["details"]] == [(0, "age")]
    ok = onnx_client.post("/v1/models/softmax/predict", json={"inputs": rows[:1]})
    assert (
        ok.status_code == 200 and None not in ok.json()["predictions"][0]["probabilities"].values()
    )


def answer(response: Any) -> np.ndarray:
    """A v2 response's `value` output, JSON or binary, read as tritonclient reads it."""
    length = response.headers.get(HEADER_LENGTH_HEADER)
    headers = {HEADER_LENGTH_HEADER: length} if length is not None else {}
    return client_result(response.content, headers).as_numpy("value")


def test_fp32_json_and_binary_get_the_same_answer(tmp_path: Path) -> None:
    """FP32 JSON data was used at float64 (0.1), binary data at float32 (0.100000001...): the
    same tensor got two answers. A float64 model shows every digit of the difference."""
    directory = tmp_path / "linear"
    directory.mkdir()
    joblib.dump(LinearRegression().fit([[0.0], [1.0]], [1.0, 4.0]), directory / "model.joblib")
    write_config(
        directory,
        {
            "name": "linear",
            "version": "1",
            "artefact": {"path": "model.joblib", "sha256": sha256_of(directory / "model.joblib")},
            "inputs": [{"name": "x0", "type": "number"}],
            "output": {"kind": "regressor"},
        },
    )
    values = [0.1, 1 / 3, 16777217]
    single = np.array(values, np.float32)
    with serve_in_process(directory) as client:
        wait_ready(client)
        tensor = {"name": "x0", "datatype": "FP32", "shape": [3], "data": values}
        as_json = client.post("/v2/models/linear/infer", json={"inputs": [tensor]})
        body, length = client_body([client_input("x0", single, "FP32", binary=True)])
        headers = {"Inference-Header-Content-Length": str(length)}
        as_binary = client.post("/v2/models/linear/infer", content=body, headers=headers)
        rows = [{"x0": float(v)} for v in single]
        v1 = client.post("/v1/models/linear/predict", json={"inputs": rows})
    assert as_json.status_code == as_binary.status_code == v1.status_code == 200
    from_json, from_binary = (answer(r) for r in (as_json, as_binary))
    assert from_json.tolist() == from_binary.tolist()
    assert from_json.tolist() == [p["value"] for p in v1.json()["predictions"]]
    assert from_json[0] != 1.3000000000000003  # 3 * 0.1 + 1 at float64
