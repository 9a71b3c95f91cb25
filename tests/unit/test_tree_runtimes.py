"""The xgboost and lightgbm runtimes: boosters trained here on tiny data, served and called.

Every model is built deterministically (fixed seeds, one thread, a few trees). Predictions are
compared with the framework's own `predict` on the same data, and served end to end from a
model directory that declares no inputs, so the schema comes from the booster.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from fastapi.testclient import TestClient

from fastinfer.model.spec import InputField, OutputSpec
from fastinfer.runtimes import Runtime, create_runtime
from fastinfer.runtimes.lightgbm import LightGBMRuntime
from fastinfer.runtimes.xgboost import XGBoostRuntime
from tests.conftest import REPO, serve_in_process, sha256_of, wait_ready, write_config

COLOURS = ["blue", "green", "red"]


# --- data and helpers -------------------------------------------------------------------------


def frame(n: int = 120, seed: int = 0) -> pd.DataFrame:
    """Mixed tabular data: a float with gaps, an int, a pandas category and a bool."""
    rng = np.random.default_rng(seed)
    data = pd.DataFrame(
        {
            "age": rng.normal(40, 12, n).round(1),
            "visits": rng.integers(0, 6, n),
            "colour": pd.Categorical(rng.choice(COLOURS, n), categories=COLOURS),
            "member": rng.integers(0, 2, n).astype(bool),
        }
    )
    data.loc[::9, "age"] = np.nan
    return data


def binary_target(data: pd.DataFrame) -> np.ndarray:
    older = data["age"].fillna(40).to_numpy() > 40
    return (older ^ (data["colour"] == "red").to_numpy()).astype(int)


def three_classes(data: pd.DataFrame) -> np.ndarray:
    return (data["visits"].to_numpy() % 3).astype(int)


def regression_target(data: pd.DataFrame) -> np.ndarray:
    colour = data["colour"].cat.codes.to_numpy()
    return data["age"].fillna(40).to_numpy() / 10 + colour * 2.0 + data["visits"].to_numpy()


def rows_of(data: pd.DataFrame, rename: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """DataFrame → JSON-like rows: NaN → None, numpy scalars → Python ones."""
    rows = []
    for record in data.to_dict("records"):
        row = {}
        for key, value in record.items():
            plain = value.item() if isinstance(value, np.generic) else value
            missing = (
                plain is None or plain is pd.NA or (isinstance(plain, float) and np.isnan(plain))
            )
            row[(rename or {}).get(str(key), str(key))] = None if missing else plain
        rows.append(row)
    return rows


def loaded(kind: str, data: bytes, output: OutputSpec, **options: Any) -> Runtime:
    """A runtime through its whole lifecycle, bound to its own derived schema."""
    runtime = create_runtime(kind, output, options)
    runtime.load(data)
    runtime.start()
    fields = runtime.derived_inputs()
    assert fields is not None
    runtime.bind_schema(fields)
    return runtime


def predict(runtime: Runtime, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    columns = [f.name for f in runtime.derived_inputs() or []]
    return runtime.predict(rows, columns)


def probabilities(predictions: list[dict[str, Any]]) -> np.ndarray:
    return np.array([list(p["probabilities"].values()) for p in predictions])


def values(predictions: list[dict[str, Any]]) -> np.ndarray:
    return np.array([p["value"] for p in predictions])


def model_dir(
    directory: Path,
    name: str,
    runtime: str,
    artefact: str,
    data: bytes,
    *,
    pinned: bool = True,
    **config: Any,
) -> Path:
    """A model directory with NO inputs: the schema must come from the booster."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / artefact).write_bytes(data)
    spec = {"path": artefact}
    if pinned:
        spec["sha256"] = sha256_of(directory / artefact)
    return write_config(
        directory, {"name": name, "version": "1", "runtime": runtime, "artefact": spec, **config}
    )


def wait_settled(client: TestClient, timeout: float = 60.0) -> dict[str, Any]:
    """The /readyz body once no model is still loading (a failed model leaves it 503)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get("/readyz")
        body: dict[str, Any] = response.json()
        if response.status_code == 200 or not {"loading", "starting"} & set(
            body["details"]["models"].values()
        ):
            return body
        time.sleep(0.02)
    raise AssertionError("models still loading")


def problems_of(response: Any) -> dict[tuple[int, str], str]:
    assert response.status_code == 422, response.text
    return {(d["row"], d["field"]): d["problem"] for d in response.json()["details"]}


# --- xgboost ----------------------------------------------------------------------------------


def train_xgb(params: dict[str, Any], data: pd.DataFrame, target: np.ndarray) -> xgb.Booster:
    matrix = xgb.DMatrix(data, label=target, enable_categorical=True)
    settings = {"max_depth": 3, "nthread": 1, "seed": 0, "max_cat_to_onehot": 1, **params}
    return xgb.train(settings, matrix, num_boost_round=6)


def saved(booster: xgb.Booster, fmt: str) -> bytes:
    return bytes(booster.save_raw(fmt))


@pytest.fixture(scope="module")
def xgb_models() -> dict[str, xgb.Booster]:
    data = frame()
    return {
        "binary": train_xgb({"objective": "binary:logistic"}, data, binary_target(data)),
        "multi": train_xgb(
            {"objective": "multi:softprob", "num_class": 3}, data, three_classes(data)
        ),
        "regression": train_xgb({"objective": "reg:squarederror"}, data, regression_target(data)),
    }


def xgb_expected(booster: xgb.Booster, data: pd.DataFrame) -> np.ndarray:
    return np.asarray(booster.predict(xgb.DMatrix(data, enable_categorical=True)))


@pytest.mark.parametrize("fmt", ["json", "ubj"])
def test_xgboost_binary_matches_booster_predict(
    xgb_models: dict[str, xgb.Booster], fmt: str
) -> None:
    booster = xgb_models["binary"]
    runtime = loaded("xgboost", saved(booster, fmt), OutputSpec(kind="classifier"))
    # Unseen data, its categories declared in another order: codes must follow the model's.
    data = frame(40, seed=1)
    data["colour"] = data["colour"].cat.reorder_categories(["red", "blue", "green"])
    predictions = predict(runtime, rows_of(data))
    positive = xgb_expected(booster, data)
    np.testing.assert_allclose(probabilities(predictions), np.c_[1 - positive, positive], atol=1e-6)
    assert [p["label"] for p in predictions] == [str(int(p > 0.5)) for p in positive]
    assert runtime.output_labels() == ["0", "1"]


@pytest.mark.parametrize("fmt", ["json", "ubj"])
def test_xgboost_multiclass_matches_booster_predict(
    xgb_models: dict[str, xgb.Booster], fmt: str
) -> None:
    booster = xgb_models["multi"]
    labels = {"0": "none", "1": "one", "2": "two"}
    runtime = loaded("xgboost", saved(booster, fmt), OutputSpec(kind="classifier", labels=labels))
    data = frame(40, seed=2)
    predictions = predict(runtime, rows_of(data))
    expected = xgb_expected(booster, data)
    np.testing.assert_allclose(probabilities(predictions), expected, atol=1e-6)
    assert list(predictions[0]["probabilities"]) == ["none", "one", "two"]
    assert [p["label"] for p in predictions] == [labels[str(i)] for i in expected.argmax(axis=1)]


@pytest.mark.parametrize("fmt", ["json", "ubj"])
def test_xgboost_regression_matches_booster_predict(
    xgb_models: dict[str, xgb.Booster], fmt: str
) -> None:
    booster = xgb_models["regression"]
    runtime = loaded("xgboost", saved(booster, fmt), OutputSpec(kind="regressor"))
    data = frame(40, seed=3)
    np.testing.assert_allclose(
        values(predict(runtime, rows_of(data))), xgb_expected(booster, data), atol=1e-6
    )
    assert runtime.output_labels() is None


def test_xgboost_derives_typed_fields_and_stored_categories(
    xgb_models: dict[str, xgb.Booster],
) -> None:
    runtime = loaded("xgboost", saved(xgb_models["binary"], "ubj"), OutputSpec())
    assert runtime.derived_inputs() == [
        InputField(name="age", type="number", nullable=True),
        InputField(name="visits", type="integer", nullable=True),
        InputField(name="colour", type="string", nullable=True, allowed=COLOURS),
        InputField(name="member", type="boolean", nullable=True),
    ]


def test_xgboost_integer_categories_and_missing_values(tmp_path: Path) -> None:
    data = frame(80, seed=4)
    data["size"] = pd.Categorical(data["visits"] % 3 * 10 + 1, categories=[21, 1, 11])
    booster = train_xgb(
        {"objective": "reg:squarederror"}, data, regression_target(data) + data["size"].cat.codes
    )
    runtime = loaded("xgboost", saved(booster, "json"), OutputSpec(kind="regressor"))
    size = runtime.derived_inputs()[-1]  # type: ignore[index]
    assert (size.type, size.allowed) == ("integer", [21, 1, 11])
    test = data.head(12).copy()
    test.loc[test.index[:3], ["colour", "size"]] = None  # missing categories → NaN codes
    test["member"] = test["member"].astype("boolean")
    test.loc[test.index[3:6], "member"] = None
    expected = xgb_expected(booster, test)
    np.testing.assert_allclose(values(predict(runtime, rows_of(test))), expected, atol=1e-6)


def test_xgboost_without_feature_names_uses_f0_to_fn() -> None:
    rng = np.random.default_rng(5)
    features = rng.normal(size=(60, 3))
    booster = xgb.train(
        {"objective": "reg:squarederror", "nthread": 1},
        xgb.DMatrix(features, label=features[:, 0]),
        num_boost_round=3,
    )
    runtime = loaded("xgboost", saved(booster, "json"), OutputSpec(kind="regressor"))
    assert runtime.derived_inputs() == [
        InputField(name=f"f{i}", type="number", nullable=True) for i in range(3)
    ]
    rows = [{f"f{i}": float(v) for i, v in enumerate(row)} for row in features[:5]]
    expected = booster.predict(xgb.DMatrix(features[:5]))
    np.testing.assert_allclose(values(predict(runtime, rows)), expected, atol=1e-6)


def test_xgboost_categorical_codes_without_stored_names_are_integer_fields() -> None:
    """Trained from NumPy with feature_types 'c', the model knows codes only."""
    rng = np.random.default_rng(6)
    features = np.c_[rng.normal(size=80), rng.integers(0, 4, 80)].astype(float)
    matrix = xgb.DMatrix(
        features,
        label=features[:, 1] * 2 + features[:, 0],
        feature_names=["x", "kind"],
        feature_types=["q", "c"],
        enable_categorical=True,
    )
    booster = xgb.train({"objective": "reg:squarederror", "nthread": 1}, matrix, 4)
    runtime = loaded("xgboost", saved(booster, "ubj"), OutputSpec(kind="regressor"))
    kind = runtime.derived_inputs()[1]  # type: ignore[index]
    assert (kind.name, kind.type, kind.minimum, kind.allowed) == ("kind", "integer", 0, None)
    rows = [{"x": float(x), "kind": int(k)} for x, k in features[:8]]
    expected = booster.predict(
        xgb.DMatrix(
            features[:8],
            feature_names=["x", "kind"],
            feature_types=["q", "c"],
            enable_categorical=True,
        )
    )
    np.testing.assert_allclose(values(predict(runtime, rows)), expected, atol=1e-6)


@pytest.mark.parametrize(
    ("objective", "kind", "message"),
    [
        ("reg:squarederror", "classifier", "objective is reg:squarederror"),
        ("multi:softmax", "classifier", "retrain with objective multi:softprob"),
        ("binary:logitraw", "classifier", "binary:logistic"),
        ("binary:logistic", "regressor", "classification objective; use output kind classifier"),
        ("binary:logistic", "tensor", "classifier or regressor, not tensor"),
    ],
)
def test_xgboost_kind_and_objective_must_agree(objective: str, kind: str, message: str) -> None:
    data = frame(40)
    target = three_classes(data) if objective.startswith("multi") else binary_target(data)
    params: dict[str, Any] = {"objective": objective}
    if objective.startswith("multi"):
        params["num_class"] = 3
    booster = train_xgb(params, data, target)
    runtime = create_runtime("xgboost", OutputSpec(kind=kind))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=message):
        runtime.load(saved(booster, "json"))


def test_xgboost_refuses_pickles_and_other_files(xgb_models: dict[str, xgb.Booster]) -> None:
    runtime = create_runtime("xgboost", OutputSpec())
    buffer = io.BytesIO()
    joblib.dump(xgb_models["binary"], buffer)
    pickled = buffer.getvalue()
    assert not runtime.needs_trust(pickled)  # refused unopened: no reason to ask for trust
    with pytest.raises(ValueError, match=r"is a Python pickle.*save_model\('model.json'\)"):
        runtime.load(pickled)
    with pytest.raises(ValueError, match="not an XGBoost model in JSON or UBJSON format"):
        runtime.load(b"tree\nversion=v4\n")
    with pytest.raises(ValueError, match="empty"):
        runtime.load(b"")
    assert not runtime.needs_trust(saved(xgb_models["binary"], "json"))
    assert runtime.needs_trust(saved(xgb_models["binary"], "ubj"))  # its parser can crash


def test_xgboost_options_and_labels_are_checked(xgb_models: dict[str, xgb.Booster]) -> None:
    runtime = loaded("xgboost", saved(xgb_models["binary"], "json"), OutputSpec(), nthread=2)
    assert isinstance(runtime, XGBoostRuntime)
    config = json.loads(runtime._booster.save_config())
    assert config["learner"]["generic_param"]["nthread"] == "2"
    with pytest.raises(ValueError, match="nthread must be a whole number"):
        XGBoostRuntime(OutputSpec(), {"nthread": "four"})
    with pytest.raises(ValueError, match=r"unknown xgboost runtime option\(s\): n_jobs"):
        XGBoostRuntime(OutputSpec(), {"n_jobs": 2})
    with pytest.raises(ValueError, match=r"key\(s\) 2 are not class indices"):
        create_runtime("xgboost", OutputSpec(labels={"2": "x"})).load(
            saved(xgb_models["binary"], "json")
        )


def test_xgboost_declared_inputs_must_name_every_feature(
    xgb_models: dict[str, xgb.Booster],
) -> None:
    runtime = create_runtime("xgboost", OutputSpec())
    runtime.load(saved(xgb_models["binary"], "json"))
    with pytest.raises(ValueError, match="feature.*member have no input field"):
        runtime.bind_schema([InputField(name=n) for n in ("age", "visits", "colour")])
    with pytest.raises(ValueError, match="'age' is a string but the booster reads a number"):
        runtime.bind_schema(
            [InputField(name="age", type="string")]
            + [InputField(name=n) for n in ("visits", "colour", "member")]
        )
    with pytest.raises(ValueError, match="'colour' is declared integer but the booster's categ"):
        runtime.bind_schema(
            [InputField(name="colour", type="integer")]
            + [InputField(name=n) for n in ("age", "visits", "member")]
        )
    # Declared without `allowed`, an unseen category is a missing value, as in XGBoost.
    runtime.bind_schema(
        [InputField(name=n, nullable=True) for n in ("age", "visits", "colour")]
        + [InputField(name="member", type="boolean")]
    )
    rows = [{"age": 50.0, "visits": 1, "colour": colour, "member": True} for colour in ("x", None)]
    first, second = predict(runtime, rows)
    assert first == second


def test_xgboost_served_with_a_derived_schema(
    tmp_path: Path, xgb_models: dict[str, xgb.Booster]
) -> None:
    booster = xgb_models["binary"]
    directory = model_dir(
        tmp_path / "churn",
        "churn",
        "xgboost",
        "model.json",
        saved(booster, "json"),
        pinned=False,  # XGBoost JSON is data: no pin, no --trust-unpinned needed
        output={"kind": "classifier", "labels": {"0": "stays", "1": "leaves"}},
        example={"age": 50.0, "visits": 2, "colour": "red", "member": True},
    )
    data = frame(6, seed=7)
    with serve_in_process(directory) as client:
        wait_ready(client)
        meta = client.get("/v1/models/churn").json()
        response = client.post("/v1/models/churn/predict", json={"inputs": rows_of(data)})
        bad = client.post(
            "/v1/models/churn/predict",
            json={"inputs": [{"age": "old", "visits": 1.5, "colour": "pink", "member": True}]},
        )
        schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert meta["self_test"] == "passed"
    assert response.status_code == 200, response.text
    positive = xgb_expected(booster, data)
    got = [p["probabilities"]["leaves"] for p in response.json()["predictions"]]
    np.testing.assert_allclose(got, positive, atol=1e-6)
    problems = problems_of(bad)
    assert problems[(0, "age")] == "must be a valid number"
    assert problems[(0, "visits")] == "must be a valid integer"
    assert problems[(0, "colour")] == "must be one of 'blue', 'green' or 'red'"
    row = schemas["ChurnRow"]["properties"]
    assert row["colour"]["anyOf"][0]["enum"] == COLOURS
    assert row["age"]["anyOf"][0]["type"] == "number"
    assert row["visits"]["anyOf"][0]["type"] == "integer"
    assert row["member"]["anyOf"][0]["type"] == "boolean"


def test_xgboost_kind_mismatch_fails_the_served_model(
    tmp_path: Path, xgb_models: dict[str, xgb.Booster]
) -> None:
    directory = model_dir(
        tmp_path / "price",
        "price",
        "xgboost",
        "model.json",
        saved(xgb_models["regression"], "json"),
        output={"kind": "classifier"},
    )
    with serve_in_process(directory) as client:
        body = wait_settled(client)
    reason = body["details"]["models"]["price"]
    assert "output kind is classifier" in reason and "reg:squarederror" in reason


# --- lightgbm ---------------------------------------------------------------------------------

LGB_PARAMS = {
    "verbose": -1,
    "num_threads": 1,
    "deterministic": True,
    "seed": 0,
    "min_data_in_leaf": 5,
    "min_data_per_group": 5,
    "cat_smooth": 1,
}


def lgb_frame(n: int = 120, seed: int = 0) -> pd.DataFrame:
    """As `frame`, with a space in a feature name (LightGBM writes it as an underscore)."""
    data = frame(n, seed).rename(columns={"visits": "past visits"})
    data["member"] = data["member"].astype(float)
    return data


LGB_RENAME = {"past visits": "past_visits"}


def train_lgb(params: dict[str, Any], data: pd.DataFrame, target: np.ndarray) -> lgb.Booster:
    return lgb.train({**LGB_PARAMS, **params}, lgb.Dataset(data, target), num_boost_round=6)


def lgb_text(booster: lgb.Booster) -> bytes:
    return booster.model_to_string().encode()


@pytest.fixture(scope="module")
def lgb_models() -> dict[str, lgb.Booster]:
    data = lgb_frame()
    base = frame()
    return {
        "binary": train_lgb({"objective": "binary"}, data, binary_target(base)),
        "multi": train_lgb({"objective": "multiclass", "num_class": 3}, data, three_classes(base)),
        "ova": train_lgb({"objective": "multiclassova", "num_class": 3}, data, three_classes(base)),
        "regression": train_lgb({"objective": "huber"}, data, regression_target(base)),
    }


def test_lightgbm_binary_matches_booster_predict(lgb_models: dict[str, lgb.Booster]) -> None:
    booster = lgb_models["binary"]
    runtime = loaded("lightgbm", lgb_text(booster), OutputSpec(kind="classifier"))
    data = lgb_frame(40, seed=1)
    data.loc[data.index[:4], "colour"] = None
    predictions = predict(runtime, rows_of(data, LGB_RENAME))
    positive = booster.predict(data)
    np.testing.assert_allclose(probabilities(predictions), np.c_[1 - positive, positive], atol=1e-6)
    assert runtime.output_labels() == ["0", "1"]


@pytest.mark.parametrize("model", ["multi", "ova"])
def test_lightgbm_multiclass_matches_booster_predict(
    lgb_models: dict[str, lgb.Booster], model: str
) -> None:
    booster = lgb_models[model]
    runtime = loaded("lightgbm", lgb_text(booster), OutputSpec(kind="classifier"))
    data = lgb_frame(40, seed=2)
    predictions = predict(runtime, rows_of(data, LGB_RENAME))
    expected = booster.predict(data)
    np.testing.assert_allclose(probabilities(predictions), expected, atol=1e-6)
    assert [p["label"] for p in predictions] == [str(i) for i in expected.argmax(axis=1)]


def test_lightgbm_regression_matches_booster_predict(lgb_models: dict[str, lgb.Booster]) -> None:
    booster = lgb_models["regression"]
    runtime = loaded("lightgbm", lgb_text(booster), OutputSpec(kind="regressor"), num_threads=2)
    data = lgb_frame(40, seed=3)
    np.testing.assert_allclose(
        values(predict(runtime, rows_of(data, LGB_RENAME))), booster.predict(data), atol=1e-6
    )


def test_lightgbm_derives_fields_and_pandas_categories(lgb_models: dict[str, lgb.Booster]) -> None:
    runtime = loaded("lightgbm", lgb_text(lgb_models["binary"]), OutputSpec())
    assert runtime.derived_inputs() == [
        InputField(name="age", type="number", nullable=True),
        InputField(name="past_visits", type="number", nullable=True),
        InputField(name="colour", type="string", nullable=True, allowed=COLOURS),
        InputField(name="member", type="number", nullable=True),
    ]


def test_a_field_named_as_the_training_column_feeds_lightgbm_s_underscored_feature(
    lgb_models: dict[str, lgb.Booster],
) -> None:
    """LightGBM trained on "past visits" names the feature past_visits: a field keeping the
    column's name feeds it. XGBoost keeps names as they are, so there no such match is made."""
    booster = lgb_models["binary"]
    runtime = loaded("lightgbm", lgb_text(booster), OutputSpec())
    fields = [
        f.model_copy(update={"name": "past visits"}) if f.name == "past_visits" else f
        for f in runtime.derived_inputs() or []
    ]
    runtime.bind_schema(fields)
    data = lgb_frame(6, seed=9)
    got = probabilities(predict(runtime, rows_of(data)))[:, 1]
    np.testing.assert_allclose(got, booster.predict(data), rtol=1e-6)
    dashed = [f.model_copy(update={"name": f.name.replace(" ", "-")}) for f in fields]
    with pytest.raises(ValueError, match=r"feature\(s\) past_visits have no input field"):
        loaded("lightgbm", lgb_text(booster), OutputSpec()).bind_schema(dashed)
    assert XGBoostRuntime.feature_name_of("past visits") == "past visits"


def test_lightgbm_integer_categories_and_unseen_values() -> None:
    data = lgb_frame(100, seed=4)
    data["size"] = pd.Categorical(data["past visits"] % 3 * 10 + 1, categories=[21, 1, 11])
    target = regression_target(frame(100, seed=4)) + data["size"].cat.codes.to_numpy()
    booster = train_lgb({"objective": "regression"}, data, target)
    runtime = loaded("lightgbm", lgb_text(booster), OutputSpec(kind="regressor"))
    size = runtime.derived_inputs()[-1]  # type: ignore[index]
    assert (size.name, size.type, size.allowed) == ("size", "integer", [21, 1, 11])
    rows = rows_of(data.head(8), LGB_RENAME)
    rows[0]["size"] = 99  # unseen (possible with declared inputs): missing, as LightGBM does
    test = data.head(8).copy()
    test["size"] = test["size"].cat.add_categories([99])
    test.loc[test.index[0], "size"] = 99
    np.testing.assert_allclose(values(predict(runtime, rows)), booster.predict(test), atol=1e-6)


def test_lightgbm_ordered_categoricals_fall_back_to_codes() -> None:
    """An ordered pandas categorical is stored but numeric: the lists cannot be matched."""
    data = lgb_frame(80, seed=5)
    data["grade"] = pd.Categorical(
        np.where(data["age"].fillna(0) > 40, "hi", "lo"), categories=["lo", "hi"], ordered=True
    )
    booster = train_lgb({"objective": "binary"}, data, binary_target(frame(80, seed=5)))
    runtime = loaded("lightgbm", lgb_text(booster), OutputSpec())
    fields = {f.name: f for f in runtime.derived_inputs() or []}
    assert (fields["colour"].type, fields["colour"].allowed) == ("integer", None)
    assert fields["grade"].type == "number"
    rows = rows_of(data.head(6), LGB_RENAME)
    for row, colour, grade in zip(
        rows, data["colour"].cat.codes[:6], data["grade"].cat.codes[:6], strict=True
    ):
        row["colour"], row["grade"] = int(colour), int(grade)
    positive = booster.predict(data.head(6))
    np.testing.assert_allclose(probabilities(predict(runtime, rows))[:, 1], positive, atol=1e-6)


@pytest.mark.parametrize(
    ("model", "kind", "message"),
    [
        ("regression", "classifier", "objective is huber, whose predictions are not class"),
        ("binary", "regressor", "objective is binary, a classification objective"),
        ("multi", "regressor", "objective is multiclass, a classification objective"),
        ("binary", "tensor", "classifier or regressor, not tensor"),
    ],
)
def test_lightgbm_kind_and_objective_must_agree(
    lgb_models: dict[str, lgb.Booster], model: str, kind: str, message: str
) -> None:
    runtime = create_runtime("lightgbm", OutputSpec(kind=kind))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=message):
        runtime.load(lgb_text(lgb_models[model]))


def test_lightgbm_refuses_pickles_and_other_files(lgb_models: dict[str, lgb.Booster]) -> None:
    runtime = create_runtime("lightgbm", OutputSpec())
    buffer = io.BytesIO()
    joblib.dump(lgb_models["binary"], buffer)
    assert not runtime.needs_trust(buffer.getvalue())
    with pytest.raises(ValueError, match=r"is a Python pickle.*save_model\('model.txt'\)"):
        runtime.load(buffer.getvalue())
    with pytest.raises(ValueError, match="not a LightGBM text model"):
        runtime.load(b'{"learner": {}}')
    text = lgb_text(lgb_models["binary"])
    with pytest.raises(ValueError, match="truncated or corrupt: its header lists 6 trees but 2"):
        runtime.load(text[: text.index(b"Tree=2")])  # cut between trees
    with pytest.raises(ValueError, match="truncated: it has no 'end of trees' line"):
        runtime.load(text[: text.index(b"Tree=5") + 40])  # cut inside a tree
    # A malformed tree is a LightGBMError, not a process killed inside LightGBM's OpenMP loop.
    corrupt = text.replace(b"leaf_value=", b"leaf_valve=", 1)
    with pytest.raises(ValueError, match="not valid.*leaf_value"):
        runtime.load(corrupt)
    runtime = create_runtime("lightgbm", OutputSpec())
    runtime.load(lgb_text(lgb_models["binary"]))
    with pytest.raises(ValueError, match="have no input field.*underscores"):
        runtime.bind_schema([InputField(name=n) for n in ("age", "past visits", "colour")])
    with pytest.raises(ValueError, match="'colour' is declared number but the booster's categ"):
        runtime.bind_schema(
            [InputField(name="colour", type="number")]
            + [InputField(name=n) for n in ("age", "past_visits", "member")]
        )
    with pytest.raises(ValueError, match="num_threads must be a whole number"):
        LightGBMRuntime(OutputSpec(), {"num_threads": -1})


def test_lightgbm_served_with_a_derived_schema(
    tmp_path: Path, lgb_models: dict[str, lgb.Booster]
) -> None:
    booster = lgb_models["regression"]
    directory = model_dir(
        tmp_path / "spend",
        "spend",
        "lightgbm",
        "model.txt",
        lgb_text(booster),
        output={"kind": "regressor"},
        example={"age": 30.0, "past_visits": 2, "colour": "blue", "member": 1},
    )
    data = lgb_frame(5, seed=8)
    with serve_in_process(directory) as client:
        wait_ready(client)
        response = client.post(
            "/v1/models/spend/predict", json={"inputs": rows_of(data, LGB_RENAME)}
        )
        bad = client.post(
            "/v1/models/spend/predict",
            json={"inputs": [{"age": 1, "past_visits": "many", "colour": "teal"}]},
        )
        schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(
        [p["value"] for p in response.json()["predictions"]], booster.predict(data), atol=1e-6
    )
    problems = problems_of(bad)
    assert problems == {
        (0, "past_visits"): "must be a valid number",
        (0, "colour"): "must be one of 'blue', 'green' or 'red'",
    }
    row = schemas["SpendRow"]["properties"]
    assert set(row) == {"age", "past_visits", "colour", "member"}
    assert row["colour"]["anyOf"][0]["enum"] == COLOURS
    assert row["past_visits"]["anyOf"][0]["type"] == "number"


# --- fork safety ------------------------------------------------------------------------------

FORK_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    import numpy as np
    from fastinfer.model.spec import OutputSpec
    from fastinfer.runtimes import create_runtime

    kind, path, option = sys.argv[1], sys.argv[2], sys.argv[3]
    runtime = create_runtime(kind, OutputSpec(kind="regressor"), {option: 2})
    runtime.load(open(path, "rb").read())  # in the parent, before the fork, as the supervisor
    fields = runtime.derived_inputs()
    rng = np.random.default_rng(0)
    rows = [{f.name: float(v) for f, v in zip(fields, r)} for r in rng.normal(size=(5000, 8))]
    pid = os.fork()
    if pid == 0:
        runtime.start()
        runtime.bind_schema(fields)
        runtime.predict(rows, [f.name for f in fields])
        os._exit(0)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            sys.exit(os.waitstatus_to_exitcode(status))
        time.sleep(0.05)
    os.kill(pid, 9)
    sys.exit("the forked worker hung in its first prediction")
    """
)


def save_xgboost(features: np.ndarray, path: Path) -> None:
    matrix = xgb.DMatrix(features, label=features[:, 0])
    xgb.train({"objective": "reg:squarederror", "nthread": 1}, matrix, 10).save_model(path)


def save_lightgbm(features: np.ndarray, path: Path) -> None:
    params = {"objective": "regression", "verbose": -1, "num_threads": 1}
    lgb.train(params, lgb.Dataset(features, features[:, 0]), 10).save_model(path)


@pytest.mark.parametrize(
    ("kind", "option", "filename", "save"),
    [
        ("xgboost", "nthread", "model.ubj", save_xgboost),
        ("lightgbm", "num_threads", "model.txt", save_lightgbm),
    ],
)
def test_a_worker_forked_after_load_predicts_with_threads(
    tmp_path: Path, kind: str, option: str, filename: str, save: Callable[[np.ndarray, Path], None]
) -> None:
    """OpenMP pools do not survive fork: loading must not start one in the parent."""
    path = tmp_path / filename
    save(np.random.default_rng(1).normal(size=(500, 8)), path)
    result = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT, kind, str(path), option],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "4", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
