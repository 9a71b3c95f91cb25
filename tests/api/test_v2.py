"""The Open Inference Protocol (v2) REST API, in-process: same data plane as v1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
from fastapi.testclient import TestClient

from tests.api.test_repository import AUTH, TOKEN, build_repository
from tests.conftest import serve_in_process, wait_ready


def infer_body(rows: list[dict[str, Any]], datatypes: dict[str, str]) -> dict[str, Any]:
    return {
        "id": "client-1",
        "inputs": [
            {
                "name": name,
                "datatype": datatype,
                "shape": [len(rows)],
                "data": [r[name] for r in rows],
            }
            for name, datatype in datatypes.items()
        ],
    }


def test_server_and_model_metadata(tiny_client: TestClient) -> None:
    server = tiny_client.get("/v2").json()
    assert server["name"] == "fastinfer"
    assert "model_repository" in server["extensions"]
    assert tiny_client.get("/v2/health/live").json() == {"live": True}
    assert tiny_client.get("/v2/health/ready").json() == {"ready": True}
    meta = tiny_client.get("/v2/models/tiny").json()
    assert meta == {
        "name": "tiny",
        "versions": ["1"],
        "platform": "sklearn",
        "inputs": [
            {"name": "x", "datatype": "FP64", "shape": [-1]},
            {"name": "colour", "datatype": "INT64", "shape": [-1]},
        ],
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP64", "shape": [-1, 2]},
        ],
        # every input numeric: one [N, 2] tensor is accepted too (outside `inputs`, which
        # clients send every one of)
        "parameters": {
            "batched_input": {
                "name": "input",
                "datatype": "FP64",
                "shape": [-1, 2],
                "columns": ["x", "colour"],
            }
        },
    }
    assert tiny_client.get("/v2/models/tiny/versions/1").json() == meta
    assert tiny_client.get("/v2/models/tiny/ready").json()["ready"] is True
    assert tiny_client.get("/v2/models/tiny/versions/1/ready").status_code == 200


def test_infer_equals_v1(tiny_client: TestClient) -> None:
    rows = [{"x": 1.0, "colour": 0}, {"x": 6.5, "colour": 1}, {"x": 3.5, "colour": 1}]
    v1 = tiny_client.post("/v1/models/tiny/predict", json={"inputs": rows}).json()
    response = tiny_client.post(
        "/v2/models/tiny/infer", json=infer_body(rows, {"x": "FP64", "colour": "INT64"})
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-model-version"] == "1"
    answer = response.json()
    assert answer["model_name"] == "tiny"
    assert answer["model_version"] == "1"
    assert answer["id"] == "client-1"
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert outputs["label"]["data"] == [p["label"] for p in v1["predictions"]]
    assert outputs["probabilities"]["shape"] == [3, 2]
    flat = [p["probabilities"][label] for p in v1["predictions"] for label in ("high", "low")]
    assert outputs["probabilities"]["data"] == flat


# x values whose float32 differs from their float64: FP32 data must reach the model as the same
# float32 (widened) whether it came per input or in one tensor, in JSON or in binary.
BATCHED_ROWS = [[0.1, 0], [6.7, 1], [3.3, 1], [1e-7, 0]]


def _binary_body(inputs: list[tuple[str, list[int], np.ndarray]]) -> tuple[bytes, dict[str, str]]:
    """A binary-tensor request (as tritonclient sends it): JSON header, then the raw tensors."""
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "datatype": "FP32" if array.dtype == np.float32 else "INT64",
                    "shape": shape,
                    "parameters": {"binary_data_size": array.nbytes},
                }
                for name, shape, array in inputs
            ]
        }
    )
    headers = {
        "Inference-Header-Content-Length": str(len(header)),
        "Content-Type": "application/octet-stream",
    }
    return header + b"".join(array.tobytes() for _, _, array in inputs), headers


def test_one_batched_tensor_answers_as_per_input_tensors(tiny_client: TestClient) -> None:
    matrix = np.array(BATCHED_ROWS, dtype=np.float32)
    x, colour = matrix[:, 0].copy(), matrix[:, 1].astype(np.int64)
    n = len(BATCHED_ROWS)
    json_column = {
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": [n], "data": x.tolist()},
            {"name": "colour", "datatype": "INT64", "shape": [n], "data": colour.tolist()},
        ]
    }
    json_batched = {
        "inputs": [{"name": "input-0", "datatype": "FP32", "shape": [n, 2], "data": BATCHED_ROWS}]
    }
    binary_column = _binary_body([("x", [n], x), ("colour", [n], colour)])
    binary_batched = _binary_body([("input__0", [n, 2], matrix)])

    def outputs(response: Any) -> Any:
        assert response.status_code == 200, response.text
        return response.json()["outputs"]

    infer = "/v2/models/tiny/infer"
    expected = outputs(tiny_client.post(infer, json=json_column))
    assert outputs(tiny_client.post(infer, json=json_batched)) == expected
    for body, headers in (binary_column, binary_batched):
        assert outputs(tiny_client.post(infer, content=body, headers=headers)) == expected
    # and they are the answers for the float32 values, widened: not for the decimals
    rows = [{"x": float(np.float32(a)), "colour": int(b)} for a, b in BATCHED_ROWS]
    v1 = tiny_client.post("/v1/models/tiny/predict", json={"inputs": rows}).json()
    probabilities = {o["name"]: o["data"] for o in expected}["probabilities"]
    assert probabilities == [
        p["probabilities"][c] for p in v1["predictions"] for c in ("high", "low")
    ]
    decimals = [{"x": a, "colour": int(b)} for a, b in BATCHED_ROWS]
    v1_decimals = tiny_client.post("/v1/models/tiny/predict", json={"inputs": decimals}).json()
    assert v1_decimals["predictions"] != v1["predictions"]

    wrong_width = tiny_client.post(
        infer,
        json={
            "inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 3], "data": [1, 0, 2]}]
        },
    )
    assert wrong_width.status_code == 400
    message = wrong_width.json()["error"]
    assert "[N, 2]" in message and "[1, 3]" in message and "x, colour" in message


def test_errors_have_the_v2_shape(tiny_client: TestClient) -> None:
    rows = [{"x": 1.0, "colour": 0}]
    unknown = tiny_client.post("/v2/models/nope/infer", json=infer_body(rows, {"x": "FP64"}))
    assert unknown.status_code == 404
    assert set(unknown.json()) == {"error"} and "nope" in unknown.json()["error"]
    wrong_type = tiny_client.post(
        "/v2/models/tiny/infer", json=infer_body(rows, {"x": "BYTES", "colour": "INT64"})
    )
    assert wrong_type.status_code == 400
    assert "'x'" in wrong_type.json()["error"]
    missing = tiny_client.post("/v2/models/tiny/infer", json=infer_body(rows, {"x": "FP64"}))
    assert missing.status_code == 400
    assert "colour" in missing.json()["error"]
    bad_value = tiny_client.post(
        "/v2/models/tiny/infer",
        json=infer_body([{"x": 1.0, "colour": 7}], {"x": "FP64", "colour": "INT64"}),
    )
    assert bad_value.status_code == 422
    assert "colour" in bad_value.json()["error"]
    garbage = tiny_client.post("/v2/models/tiny/infer", content=b"{not json")
    assert garbage.status_code == 400
    assert set(garbage.json()) == {"error"}
    no_route = tiny_client.get("/v2/nothing/here")
    assert no_route.status_code == 404 and set(no_route.json()) == {"error"}
    assert tiny_client.get("/v2/models/tiny/versions/9").status_code == 404
    assert tiny_client.get("/health").status_code == 200  # and the service is still up


def test_nan_is_missing_in_nullable_float_columns(tmp_path: Path) -> None:
    from tests.conftest import build_scripted_model

    directory = build_scripted_model(tmp_path / "scripted")
    with serve_in_process(directory) as client:
        wait_ready(client)
        body = {
            "inputs": [
                {"name": "x", "datatype": "FP64", "shape": [2], "data": [1.0, 2.0]},
                {"name": "sleep", "datatype": "FP64", "shape": [2], "data": [0.0, "NaN"]},
            ]
        }
        # JSON has no NaN literal; the binary path carries real NaNs (see the tritonclient test)
        response = client.post("/v2/models/scripted/infer", json=body)
        assert response.status_code == 400


def test_repository_extension(tmp_path: Path) -> None:
    repository = build_repository(tmp_path / "models", {"tiny": ["1", "2"]})
    with serve_in_process(model_repository=repository, admin_token=TOKEN) as client:
        wait_ready(client)
        index = client.post("/v2/repository/index").json()
        assert [(e["name"], e["version"], e["state"]) for e in index] == [
            ("tiny", "1", "READY"),
            ("tiny", "2", "READY"),
        ]
        assert client.post("/v2/repository/models/tiny/unload").status_code == 401
        unloaded = client.post("/v2/repository/models/tiny/unload", headers=AUTH)
        assert unloaded.status_code == 200, unloaded.text
        assert client.get("/v2/models/tiny").status_code == 404
        index = client.post("/v2/repository/index", json={"ready": False}).json()
        assert {e["state"] for e in index} == {"UNAVAILABLE"}
        assert client.post("/v2/repository/index", json={"ready": True}).json() == []
        loaded = client.post("/v2/repository/models/tiny/load", headers=AUTH)
        assert loaded.status_code == 200, loaded.text
        assert client.get("/v2/models/tiny").json()["versions"] == ["1", "2"]
        missing = client.post("/v2/repository/models/ghost/load", headers=AUTH)
        assert missing.status_code == 404
        assert "ghost" in missing.json()["error"]


def test_the_repository_index_shows_no_directories(tmp_path: Path) -> None:
    repository = build_repository(tmp_path / "models", {"tiny": ["1", "2"]})
    (repository / "tiny" / "2" / "model.joblib").write_bytes(b"tampered")
    with serve_in_process(model_repository=repository, admin_token=TOKEN) as client:
        wait_ready(client)
        index = client.post("/v2/repository/index").json()
        broken = next(e for e in index if e["version"] == "2")
        assert broken["state"] == "UNAVAILABLE" and "model.joblib" in broken["reason"]
        assert str(tmp_path) not in broken["reason"]
        missing = client.post("/v2/repository/models/ghost/load", headers=AUTH)
        assert str(tmp_path) not in missing.text
