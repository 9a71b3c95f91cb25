"""The shipped examples, served: answers equal the training code's own predictions (no skew)."""

from __future__ import annotations

import importlib.util
import math
import sys
from typing import Any

import joblib
import numpy as np
import pandas as pd
from fastapi.testclient import TestClient

from tests.conftest import CAR, TITANIC


def _rows_from_holdout() -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    frame = pd.read_csv(TITANIC / "holdout.csv")
    features = frame.drop(columns=["Survived"])
    rows: list[dict[str, Any]] = []
    for record in features.to_dict(orient="records"):
        row: dict[str, Any] = {}
        for key, value in record.items():
            if isinstance(value, float) and math.isnan(value):
                continue  # a missing cell is left out of the JSON row
            if key in {"PassengerId", "Pclass", "SibSp", "Parch"}:
                value = int(value)
            row[key] = value.item() if isinstance(value, np.generic) else value
        rows.append(row)
    return features, rows


def test_titanic_served_equals_in_process(examples_client: TestClient) -> None:
    features, rows = _rows_from_holdout()
    sys.path.insert(0, str(TITANIC))
    pipeline = joblib.load(TITANIC / "model.joblib")
    expected = pipeline.predict_proba(features)[:, list(pipeline.classes_).index(1)]
    assert any("Age" not in r for r in rows) and any("Cabin" not in r for r in rows)

    served: list[float] = []
    labels: list[str] = []
    for start in range(0, len(rows), 64):
        response = examples_client.post(
            "/v1/models/titanic/predict", json={"inputs": rows[start : start + 64]}
        )
        assert response.status_code == 200, response.text
        for prediction in response.json()["predictions"]:
            served.append(prediction["probabilities"]["survived"])
            labels.append(prediction["label"])
    np.testing.assert_allclose(served, expected, atol=1e-6)
    assert labels == ["survived" if p > 0.5 else "died" for p in expected]


def test_titanic_missing_fields_and_explicit_nulls_agree(examples_client: TestClient) -> None:
    row = {
        "PassengerId": 5,
        "Pclass": 3,
        "Name": "Allen, Mr. William Henry",
        "Sex": "male",
        "SibSp": 0,
        "Parch": 0,
        "Ticket": "373450",
        "Fare": 8.05,
    }
    explicit = {**row, "Age": None, "Cabin": None, "Embarked": None}
    response = examples_client.post("/v1/models/titanic/predict", json={"inputs": [row, explicit]})
    assert response.status_code == 200
    left_out, nulls = response.json()["predictions"]
    assert left_out == nulls
    assert left_out["label"] == "died"


def test_titanic_rejects_unknown_category_listing_allowed_values(
    examples_client: TestClient,
) -> None:
    example = examples_client.get("/v1/models/titanic").json()["example"]
    response = examples_client.post(
        "/v1/models/titanic/predict", json={"inputs": [example, {**example, "Embarked": "X"}]}
    )
    assert response.status_code == 422
    (problem,) = response.json()["details"]
    assert problem["row"] == 1 and problem["field"] == "Embarked"
    assert problem["problem"] == "must be one of 'S', 'C' or 'Q'"


def test_car_evaluation_answers_the_four_classes_like_in_process(
    examples_client: TestClient,
) -> None:
    spec = importlib.util.spec_from_file_location("car_train", CAR / "train.py")
    assert spec is not None and spec.loader is not None
    car_train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(car_train)

    grid = car_train.build_grid()
    rows = grid.to_dict(orient="records")
    pipeline = joblib.load(CAR / "model.joblib")
    expected = list(pipeline.predict(grid))
    served: list[str] = []
    for start in range(0, len(rows), 64):
        response = examples_client.post(
            "/v1/models/car_evaluation/predict", json={"inputs": rows[start : start + 64]}
        )
        assert response.status_code == 200, response.text
        served.extend(p["label"] for p in response.json()["predictions"])
    assert served == expected
    assert set(served) == {"unacc", "acc", "good", "vgood"}
    meta = examples_client.get("/v1/models/car_evaluation").json()
    assert sorted(meta["output"]["labels"]) == ["acc", "good", "unacc", "vgood"]
    assert meta["input_schema"]["properties"]["safety"]["enum"] == ["low", "med", "high"]
