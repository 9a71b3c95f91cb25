"""Fidelity (issue 13), end to end: v1 JSON, v2 JSON, v2 binary FP64 and `fastinfer predict` all
answer the model's own labels (`predict`) and its probabilities bit for bit."""

from __future__ import annotations

import csv
import importlib.util
import json
import struct
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sklearn.svm import SVC
from typer.testing import CliRunner

from fastinfer.cli import app
from tests.api.test_examples_served import _rows_from_holdout
from tests.conftest import CAR, TITANIC, serve_in_process, sha256_of, wait_ready, write_config

pytestmark = pytest.mark.filterwarnings("ignore:The `probability` parameter:FutureWarning")

NAMES = ["a", "b", "c"]
LABELS = {"0": "no", "1": "yes"}


def frame(n: int, seed: int) -> pd.DataFrame:
    return pd.DataFrame(np.random.default_rng(seed).normal(size=(n, 3)), columns=NAMES)


@pytest.fixture(scope="module")
def svc() -> SVC:
    train = frame(300, seed=0)
    noise = np.random.default_rng(1).normal(size=len(train))
    target = (train["a"].to_numpy() + 0.8 * noise > 0).astype(int)
    return SVC(probability=True, random_state=0).fit(train, target)


@pytest.fixture(scope="module")
def svc_dir(svc: SVC, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("svc")
    joblib.dump(svc, directory / "model.joblib")
    return write_config(
        directory,
        {
            "name": "svc",
            "version": "1",
            "runtime": "sklearn",
            "artefact": {"path": "model.joblib", "sha256": sha256_of(directory / "model.joblib")},
            "inputs": [{"name": name, "type": "number"} for name in NAMES],
            "example": {"a": 1.0, "b": 0.0, "c": 0.0},
            "output": {"kind": "classifier", "labels": LABELS},
        },
    )


@pytest.fixture(scope="module")
def data(svc: SVC) -> pd.DataFrame:
    """1,000 rows, on some of which the SVC's predict and its most probable class disagree."""
    rows = frame(1000, seed=2)
    assert (svc.predict_proba(rows).argmax(axis=1) != svc.predict(rows)).sum() >= 3
    return rows


def expected_labels(svc: SVC, rows: pd.DataFrame) -> list[str]:
    return [LABELS[str(v)] for v in svc.predict(rows)]


def bits(values: Any) -> bytes:
    return np.asarray(values, dtype=np.float64).tobytes()


def v2_body(rows: pd.DataFrame, binary: bool) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": n, "datatype": "FP64", "shape": [len(rows)], "data": rows[n].tolist()}
            for n in NAMES
        ],
        "parameters": {"binary_data_output": binary},
    }


def split_binary(response: Any) -> dict[str, Any]:
    """A v2 binary response → {output name: raw bytes}, in the header's order."""
    length = int(response.headers["inference-header-content-length"])
    header = json.loads(response.content[:length])
    found, offset = {}, length
    for output in header["outputs"]:
        size = output["parameters"]["binary_data_size"]
        found[output["name"]] = response.content[offset : offset + size]
        offset += size
    return found


def bytes_strings(raw: bytes) -> list[str]:
    values, offset = [], 0
    while offset < len(raw):
        (size,) = struct.unpack_from("<I", raw, offset)
        values.append(raw[offset + 4 : offset + 4 + size].decode())
        offset += 4 + size
    return values


def test_v1_and_v2_answer_predict_and_predict_proba_exactly(
    svc: SVC, svc_dir: Path, data: pd.DataFrame
) -> None:
    rows = data.to_dict("records")
    with serve_in_process(svc_dir) as client:
        wait_ready(client)
        v1 = [
            p
            for start in range(0, len(rows), 500)
            for p in client.post(
                "/v1/models/svc/predict", json={"inputs": rows[start : start + 500]}
            ).json()["predictions"]
        ]
        v2_json = client.post("/v2/models/svc/infer", json=v2_body(data, binary=False))
        v2_binary = client.post("/v2/models/svc/infer", json=v2_body(data, binary=True))
    expected = svc.predict_proba(data)
    labels = expected_labels(svc, data)
    assert [p["label"] for p in v1] == labels
    assert bits([[p["probabilities"][k] for k in ("no", "yes")] for p in v1]) == bits(expected)

    assert v2_json.status_code == 200, v2_json.text
    outputs = {o["name"]: o for o in v2_json.json()["outputs"]}
    assert outputs["label"]["data"] == labels
    assert bits(outputs["probabilities"]["data"]) == bits(expected.reshape(-1))

    assert v2_binary.status_code == 200, v2_binary.text
    raw = split_binary(v2_binary)
    assert bytes_strings(raw["label"]) == labels
    assert raw["probabilities"] == expected.astype("<f8").tobytes()


def test_fastinfer_predict_answers_as_the_server(
    svc: SVC, svc_dir: Path, data: pd.DataFrame, tmp_path: Path
) -> None:
    source = tmp_path / "rows.csv"
    data.to_csv(source, index=False, float_format="%.17g")  # every float exactly
    expected = svc.predict_proba(data)
    labels = expected_labels(svc, data)
    runner = CliRunner()
    lines = runner.invoke(app, ["predict", str(svc_dir), str(source), "--no-progress"])
    assert lines.exit_code == 0, lines.stderr
    records = [json.loads(line) for line in lines.stdout.splitlines()]
    assert [r["label"] for r in records] == labels
    assert bits([[r["probabilities"][k] for k in ("no", "yes")] for r in records]) == bits(expected)

    out = tmp_path / "scored.csv"
    table = runner.invoke(app, ["predict", str(svc_dir), str(source), "-o", str(out)])
    assert table.exit_code == 0, table.stderr
    with out.open() as handle:
        scored = list(csv.DictReader(handle))
    assert [r["label"] for r in scored] == labels
    assert bits([[float(r["p_no"]), float(r["p_yes"])] for r in scored]) == bits(expected)


def test_car_evaluation_tiny_probabilities_are_served_not_zeroed(
    examples_client: TestClient,
) -> None:
    """The issue's case: most car_evaluation rows have a class probability below 5e-7, which
    rounding to 6 decimals served as 0.0."""
    spec = importlib.util.spec_from_file_location("car_train", CAR / "train.py")
    assert spec is not None and spec.loader is not None
    car_train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(car_train)
    grid = car_train.build_grid()
    pipeline = joblib.load(CAR / "model.joblib")
    expected = pipeline.predict_proba(grid)
    classes = [str(c) for c in pipeline.classes_]
    rows = grid.to_dict(orient="records")
    served = [
        p
        for start in range(0, len(rows), 64)
        for p in examples_client.post(
            "/v1/models/car_evaluation/predict", json={"inputs": rows[start : start + 64]}
        ).json()["predictions"]
    ]
    table = np.array([[p["probabilities"][c] for c in classes] for p in served])
    tiny = (expected > 0) & (expected < 5e-7)
    assert tiny.any(axis=1).sum() > len(rows) // 2
    assert (table[tiny] > 0).all()
    assert table.tobytes() == expected.tobytes()
    np.testing.assert_array_equal(table.sum(axis=1), expected.sum(axis=1))
    assert [p["label"] for p in served] == list(pipeline.predict(grid))


def test_titanic_holdout_is_served_exactly(examples_client: TestClient) -> None:
    features, rows = _rows_from_holdout()
    sys.path.insert(0, str(TITANIC))
    pipeline = joblib.load(TITANIC / "model.joblib")
    expected = pipeline.predict_proba(features)
    served = [
        p
        for start in range(0, len(rows), 64)
        for p in examples_client.post(
            "/v1/models/titanic/predict", json={"inputs": rows[start : start + 64]}
        ).json()["predictions"]
    ]
    names = {"0": "died", "1": "survived"}
    columns = [names[str(c)] for c in pipeline.classes_]
    assert bits([[p["probabilities"][c] for c in columns] for p in served]) == bits(expected)
    assert [p["label"] for p in served] == [names[str(v)] for v in pipeline.predict(features)]
