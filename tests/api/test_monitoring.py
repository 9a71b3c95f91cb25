"""Drift and feedback through the API (one in-process server; the multi-process behaviour is in
tests/integration/test_prediction_log_server.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from tests.conftest import TITANIC, serve_in_process, wait_ready

HOLDOUT = TITANIC / "holdout.csv"


def holdout_rows() -> list[dict[str, Any]]:
    frame = pd.read_csv(HOLDOUT).drop(columns=["Survived"])
    frame = frame.astype(object).where(frame.notna(), None)
    return frame.to_dict(orient="records")  # type: ignore[return-value]


def outcomes() -> list[int]:
    return [int(v) for v in pd.read_csv(HOLDOUT)["Survived"]]


def predict_all(client: TestClient, rows: list[dict[str, Any]], prefix: str) -> list[Any]:
    predictions: list[Any] = []
    for start in range(0, len(rows), 100):
        response = client.post(
            "/v1/models/titanic/predict",
            json={"inputs": rows[start : start + 100]},
            headers={"X-Request-ID": f"{prefix}-{start // 100}"},
        )
        assert response.status_code == 200, response.text
        predictions += response.json()["predictions"]
    return predictions


@pytest.fixture
def monitored(examples_built: None, tmp_path: Path) -> Iterator[TestClient]:
    with serve_in_process(
        TITANIC, prediction_log="jsonl", prediction_log_dir=tmp_path / "log"
    ) as client:
        wait_ready(client)
        yield client


def test_traffic_like_the_reference_shows_no_drift(monitored: TestClient) -> None:
    predict_all(monitored, holdout_rows(), "same")
    report = monitored.get("/v1/models/titanic/drift").json()
    assert report["rows"] == 418
    assert report["drifted"] == []
    assert report["version"] == "1.0.0"
    for name, feature in report["features"].items():
        assert feature["psi"] is not None and feature["psi"] < 0.1, (name, feature)
    assert "Name" not in report["features"]  # identifier-like: left out of the reference
    assert report["features"]["Age"]["missing"] > 0  # unknown ages are counted, not binned


def test_shifting_one_feature_drifts_only_that_feature(monitored: TestClient) -> None:
    rows = holdout_rows()
    for row in rows:
        if row["Age"] is not None:
            row["Age"] = min(row["Age"] + 25, 120)
    predict_all(monitored, rows, "older")
    report = monitored.get("/v1/models/titanic/drift").json()
    assert report["drifted"] == ["Age"]
    age = report["features"]["Age"]
    assert age["psi"] > 0.2 and age["drifted"]
    assert age["out_of_range"] > 0  # older than anyone in the reference
    others = {n: f["psi"] for n, f in report["features"].items() if n != "Age"}
    assert all(psi < 0.2 for psi in others.values()), others


def test_feedback_joins_the_logged_prediction_and_scores_it(monitored: TestClient) -> None:
    rows = holdout_rows()[:10]
    truth = outcomes()[:10]
    predictions = predict_all(monitored, rows, "fb")  # one request: id fb-0, rows 0..9
    answers = []
    deadline = time.monotonic() + 10
    for row, outcome in enumerate(truth):
        while True:  # the log writes in batches about once a second
            response = monitored.post(
                "/v1/models/titanic/feedback",
                json={"request_id": "fb-0", "row": row, "outcome": outcome},
            )
            if response.status_code != 404 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert response.status_code == 200, response.text
        answers.append(response.json())
    unknown = monitored.post(
        "/v1/models/titanic/feedback",
        json={"request_id": "fb-0", "row": 0, "outcome": "setosa"},
    )
    assert unknown.status_code == 422
    assert unknown.json()["details"][0]["allowed"] == ["died", "survived"]
    labels = {0: "died", 1: "survived"}
    for answer, prediction, outcome in zip(answers, predictions, truth, strict=True):
        assert answer["prediction"] == prediction
        assert answer["version"] == "1.0.0"
        assert answer["correct"] == (prediction["label"] == labels[outcome])
        assert answer["abs_error"] is None


def test_feedback_errors_say_what_is_wrong(monitored: TestClient) -> None:
    unknown = monitored.post(
        "/v1/models/titanic/feedback", json={"request_id": "never-made", "outcome": 1}
    )
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "prediction_not_found"
    missing = monitored.post("/v1/models/titanic/feedback", json={"request_id": "x"})
    assert missing.status_code == 422
    assert "outcome" in str(missing.json()["details"])
    garbage = monitored.post(
        "/v1/models/titanic/feedback",
        content=b"\xff{not json",
        headers={"Content-Type": "application/json"},
    )
    assert garbage.status_code == 400
    assert garbage.json()["code"] == "malformed_request"
    assert garbage.json()["message"] == "the body is not valid JSON"
    no_model = monitored.post("/v1/models/nope/feedback", json={"request_id": "x", "outcome": 1})
    assert no_model.status_code == 404
    assert no_model.json()["code"] == "model_not_found"


def test_feedback_without_a_prediction_log_is_refused_clearly(examples_built: None) -> None:
    with serve_in_process(TITANIC) as client:
        wait_ready(client)
        response = client.post(
            "/v1/models/titanic/feedback", json={"request_id": "a", "outcome": 1}
        )
        assert response.status_code == 409
        assert response.json()["code"] == "feedback_disabled"
        assert "FASTINFER_PREDICTION_LOG" in response.json()["message"]


def test_a_model_without_reference_statistics_has_no_drift(tiny_client: TestClient) -> None:
    response = tiny_client.get("/v1/models/tiny/drift")
    assert response.status_code == 409
    assert response.json()["code"] == "no_reference"


def test_durable_log_answers_only_what_it_has_written(examples_built: None, tmp_path: Path) -> None:
    """FASTINFER_PREDICTION_LOG_DURABILITY=durable: a 200 means the rows are in the file already
    (not at the next flush, here an hour away); a sink that fails turns the answer into a 503
    instead of an unlogged prediction, and the server recovers with the sink."""
    log_dir = tmp_path / "log"
    rows = holdout_rows()[:3]
    with serve_in_process(
        TITANIC,
        prediction_log="jsonl",
        prediction_log_dir=log_dir,
        prediction_log_flush_s=3600,
        prediction_log_durability="durable",
    ) as client:
        wait_ready(client)

        def post(request_id: str) -> Any:
            return client.post(
                "/v1/models/titanic/predict",
                json={"inputs": rows},
                headers={"X-Request-ID": request_id},
            )

        def logged() -> list[str]:
            return [
                line.split('"request_id":"', 1)[1].split('"', 1)[0]
                for path in log_dir.glob("*.jsonl")
                for line in path.read_text().splitlines()
            ]

        assert post("first").status_code == 200
        assert logged() == ["first"] * 3
        log = client.app.state.monitor.log  # type: ignore[attr-defined]
        write = log.sink.write

        def failing(records: list[Any]) -> None:
            raise OSError("disk full")

        log.sink.write = failing
        refused = post("refused")
        assert refused.status_code == 503, refused.text
        assert refused.json()["code"] == "prediction_log_unavailable"
        assert refused.headers["retry-after"] == "1"
        log.sink.write = write
        deadline = time.monotonic() + 10
        while log._failing and time.monotonic() < deadline:  # the retry goes in
            time.sleep(0.02)
        assert post("after").status_code == 200
        assert logged() == ["first"] * 3 + ["refused"] * 3 + ["after"] * 3
