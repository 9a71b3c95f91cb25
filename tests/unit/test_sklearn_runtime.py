"""The sklearn runtime: skops artefacts, and input schemas inferred from fitted pipelines."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
import skops.io
from fastapi.testclient import TestClient
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import FeatureUnion, Pipeline, make_pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    StandardScaler,
)

from fastinfer.model.spec import InputField, OutputSpec
from fastinfer.runtimes import create_runtime
from fastinfer.runtimes.sklearn import SklearnRuntime
from fastinfer.runtimes.sklearn_schema import inferred_fields, refusing_encoder_fields
from tests.conftest import serve_in_process, sha256_of, wait_ready, write_config

COLOURS = ["blue", "green", "red"]
SIZES = ["L", "M", "S"]


def double(values: Any) -> Any:
    """A custom function: skops does not trust it unless the config says so."""
    return values * 2


def shop_frame(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "colour": rng.choice(COLOURS, n),
            "size": rng.choice(SIZES, n),
            "age": rng.normal(40, 10, n).round(1),
            "income": rng.normal(3000, 800, n).round(0),
        }
    )


def bought(data: pd.DataFrame) -> np.ndarray:
    return ((data["age"] > 40) ^ (data["colour"] == "red")).to_numpy().astype(int)


def shop_pipeline(numeric: Any = None) -> Pipeline:
    """OneHotEncoder on the strings, StandardScaler (or `numeric`) on the numbers."""
    columns = ColumnTransformer(
        [
            ("categories", OneHotEncoder(handle_unknown="ignore"), ["colour", "size"]),
            ("numbers", numeric if numeric is not None else StandardScaler(), ["age", "income"]),
        ]
    )
    data = shop_frame()
    return Pipeline([("columns", columns), ("model", LogisticRegression(max_iter=2000))]).fit(
        data, bought(data)
    )


def loaded(data: bytes, output: OutputSpec | None = None, **options: Any) -> SklearnRuntime:
    runtime = create_runtime("sklearn", output or OutputSpec(kind="classifier"), options)
    assert isinstance(runtime, SklearnRuntime)
    runtime.load(data)
    runtime.start()
    return runtime


def derived(estimator: Any) -> list[InputField]:
    fields = loaded(joblib_bytes(estimator), OutputSpec(kind="regressor")).derived_inputs()
    assert fields is not None
    return fields


def joblib_bytes(estimator: Any) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(estimator, buffer)
    return buffer.getvalue()


def model_dir(directory: Path, artefact: str, data: bytes, *, pinned: bool, **config: Any) -> Path:
    """A model directory with NO inputs, pinned or not."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / artefact).write_bytes(data)
    spec = {"path": artefact}
    if pinned:
        spec["sha256"] = sha256_of(directory / artefact)
    return write_config(
        directory,
        {
            "name": directory.name,
            "version": "1",
            "runtime": "sklearn",
            "artefact": spec,
            "output": {"kind": "classifier"},
            **config,
        },
    )


def failure_reason(client: TestClient, name: str, timeout: float = 30.0) -> str:
    """Why `name` failed to load (it must fail)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get("/readyz")
        reason = response.json().get("details", {}).get("models", {}).get(name)
        if response.status_code == 503 and reason not in (None, "loading", "starting"):
            return str(reason)
        assert response.status_code == 503, "the model loaded but should have failed"
        time.sleep(0.02)
    raise AssertionError(f"{name} still loading")


# --- skops ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shop() -> Pipeline:
    return shop_pipeline()


def test_skops_needs_no_trust_and_joblib_does(shop: Pipeline) -> None:
    runtime = SklearnRuntime(OutputSpec())
    assert not runtime.needs_trust(skops.io.dumps(shop))
    assert runtime.needs_trust(joblib_bytes(shop))


def test_skops_pipeline_serves_unpinned_with_a_derived_schema(
    tmp_path: Path, shop: Pipeline
) -> None:
    directory = model_dir(
        tmp_path / "shop",
        "model.skops",
        skops.io.dumps(shop),
        pinned=False,
        example={"colour": "red", "size": "M", "age": 50.0, "income": 3000},
    )
    data = shop_frame(8, seed=1)
    rows = data.to_dict("records")
    with serve_in_process(directory) as client:  # no --trust-unpinned: skops needs none
        wait_ready(client)
        meta = client.get("/v1/models/shop").json()
        response = client.post("/v1/models/shop/predict", json={"inputs": rows})
        bad = client.post(
            "/v1/models/shop/predict",
            json={"inputs": [{"colour": "pink", "size": "M", "age": "old", "income": 1}]},
        )
        schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert meta["self_test"] == "passed"
    assert meta["inputs"] == [
        {"name": "colour", "type": "string", "allowed": COLOURS, "nullable": False},
        {"name": "size", "type": "string", "allowed": SIZES, "nullable": False},
        {"name": "age", "type": "number", "nullable": False},
        {"name": "income", "type": "number", "nullable": False},
    ]
    assert response.status_code == 200, response.text
    got = [p["probabilities"]["1"] for p in response.json()["predictions"]]
    np.testing.assert_allclose(got, shop.predict_proba(data)[:, 1], atol=1e-6)
    assert bad.status_code == 422, bad.text
    problems = {(d["row"], d["field"]): d["problem"] for d in bad.json()["details"]}
    assert problems == {
        (0, "colour"): "must be one of 'blue', 'green' or 'red'",
        (0, "age"): "must be a valid number",
    }
    row = schemas["ShopRow"]["properties"]
    assert row["colour"]["enum"] == COLOURS
    assert row["size"]["enum"] == SIZES
    assert row["age"]["type"] == "number" and row["income"]["type"] == "number"


def test_untrusted_skops_types_fail_listing_them(tmp_path: Path) -> None:
    pipeline = shop_pipeline(numeric=FunctionTransformer(double))
    data = skops.io.dumps(pipeline)
    name = f"{__name__}.double"
    with pytest.raises(ValueError, match=rf"not trust by default: {name}\..*trusted_types"):
        loaded(data)
    directory = model_dir(tmp_path / "custom", "model.skops", data, pinned=True)
    with serve_in_process(directory) as client:
        reason = failure_reason(client, "custom")
    assert name in reason and "runtime_options: {trusted_types: [" in reason


def test_trusted_types_let_listed_types_load(tmp_path: Path) -> None:
    pipeline = shop_pipeline(numeric=FunctionTransformer(double))
    directory = model_dir(
        tmp_path / "custom",
        "model.skops",
        skops.io.dumps(pipeline),
        pinned=False,
        runtime_options={"trusted_types": [f"{__name__}.double"]},
    )
    data = shop_frame(5, seed=2)
    with serve_in_process(directory) as client:
        wait_ready(client)
        response = client.post(
            "/v1/models/custom/predict", json={"inputs": data.to_dict("records")}
        )
        inputs = client.get("/v1/models/custom").json()["inputs"]
    assert response.status_code == 200, response.text
    got = [p["probabilities"]["1"] for p in response.json()["predictions"]]
    np.testing.assert_allclose(got, pipeline.predict_proba(data)[:, 1], atol=1e-6)
    # A custom function says nothing about its columns: they fall back to any value.
    assert [(f["name"], f["type"]) for f in inputs][2:] == [("age", "any"), ("income", "any")]


def test_joblib_unpinned_is_still_refused(tmp_path: Path, shop: Pipeline) -> None:
    directory = model_dir(tmp_path / "pickled", "model.joblib", joblib_bytes(shop), pinned=False)
    with serve_in_process(directory) as client:
        reason = failure_reason(client, "pickled")
    assert "no sha256 pin" in reason and "--trust-unpinned" in reason


def test_trusted_types_option_is_checked(shop: Pipeline) -> None:
    with pytest.raises(ValueError, match="trusted_types must be a list of fully qualified"):
        SklearnRuntime(OutputSpec(), {"trusted_types": "numpy.dtype"})
    with pytest.raises(ValueError, match="trusted_types applies to skops artefacts"):
        loaded(joblib_bytes(shop), trusted_types=["numpy.dtype"])
    with pytest.raises(ValueError, match="zip archive but not a readable skops file"):
        loaded(b"PK\x03\x04 not really a zip")


# --- schemas inferred from fitted pipelines ---------------------------------------------------


def test_imputers_make_columns_nullable_and_keep_categories() -> None:
    data = shop_frame(40, seed=3)
    data.loc[::5, "colour"] = None
    data.loc[::4, "age"] = np.nan
    columns = ColumnTransformer(
        [
            (
                "categories",
                make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder()),
                ["colour"],
            ),
            ("numbers", make_pipeline(SimpleImputer(strategy="median"), MinMaxScaler()), ["age"]),
            ("sizes", OrdinalEncoder(), ["size"]),
        ],
        remainder="drop",
    )
    pipeline = make_pipeline(columns, LogisticRegression()).fit(
        data, bought(data.fillna({"age": 40.0, "colour": "blue"}))
    )
    runtime = loaded(joblib_bytes(pipeline))
    fields = runtime.derived_inputs()
    assert fields == [
        InputField(name="colour", type="string", allowed=COLOURS, nullable=True),
        InputField(name="size", type="string", allowed=SIZES),
        InputField(name="age", type="number", nullable=True),
        InputField(name="income", type="any", nullable=True),  # dropped: never read
    ]
    runtime.bind_schema(fields or [])
    rows = [
        {"colour": None, "size": "S", "age": None, "income": None},
        {"colour": "red", "size": "L", "age": 61.5, "income": 2000},
    ]
    expected = pipeline.predict_proba(pd.DataFrame(rows))[:, 1]
    got = [p["probabilities"]["1"] for p in runtime.predict(rows, [f.name for f in fields or []])]
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_numeric_categories_passthrough_and_nan_aware_models() -> None:
    data = pd.DataFrame(
        {"rooms": [1, 2, 3, 2, 1, 3] * 4, "area": np.linspace(20, 120, 24), "floor": [0.0] * 24}
    )
    target = data["area"] * 10 + data["rooms"]
    columns = ColumnTransformer([("rooms", OneHotEncoder(), ["rooms"])], remainder="passthrough")
    boosted = make_pipeline(columns, HistGradientBoostingRegressor(max_iter=5)).fit(data, target)
    assert derived(boosted) == [
        InputField(name="rooms", type="integer", allowed=[1, 2, 3]),
        InputField(name="area", type="number", nullable=True),  # the model takes NaN itself
        InputField(name="floor", type="number", nullable=True),
    ]
    linear = make_pipeline(columns, LinearRegression()).fit(data, target)
    assert [(f.type, f.nullable) for f in derived(linear)][1:] == [("number", False)] * 2


def test_bare_estimators_take_numbers_and_unknown_structures_take_anything() -> None:
    data = pd.DataFrame({"x": [0.0, 1, 2, 3, 4, 5], "y": [1.0, 0, 1, 0, 1, 0]})
    target = [0, 0, 0, 1, 1, 1]
    bare = LogisticRegression().fit(data, target)
    assert derived(bare) == [
        InputField(name="x", type="number"),
        InputField(name="y", type="number"),
    ]
    search = GridSearchCV(LogisticRegression(), {"C": [1.0]}, cv=2).fit(data, target)
    assert derived(search) == [InputField(name="x"), InputField(name="y")]
    custom = make_pipeline(FunctionTransformer(double), LogisticRegression()).fit(data, target)
    assert derived(custom) == [InputField(name="x"), InputField(name="y")]
    unnamed = LogisticRegression().fit(data.to_numpy(), target)
    assert derived(unnamed) == [
        InputField(name="x0", type="number"),
        InputField(name="x1", type="number"),
    ]


def test_inference_never_fails_a_load() -> None:
    class Pipeline:  # impersonates scikit-learn's, and breaks when inference looks inside
        __module__ = "sklearn.pipeline"

        @property
        def steps(self) -> list[Any]:
            raise RuntimeError("not what inference expects")

    assert inferred_fields(Pipeline(), ["a", "b"]) == [InputField(name="a"), InputField(name="b")]


def test_refusing_encoders_are_found_wherever_they_sit() -> None:
    """Even where the pipeline can not be followed (a FeatureUnion), an encoder that refuses
    unknown values gives its columns' categories; one that ignores them gives none."""
    data = shop_frame()
    union = FeatureUnion(
        [
            ("strict", ColumnTransformer([("c", OneHotEncoder(), ["colour"])])),
            ("lax", ColumnTransformer([("s", OneHotEncoder(handle_unknown="ignore"), ["size"])])),
            ("numbers", ColumnTransformer([("n", StandardScaler(), ["age"])])),
        ]
    )
    model = Pipeline([("union", union), ("model", LogisticRegression())]).fit(data, bought(data))
    assert derived(model)[0] == InputField(name="colour")  # the served schema can not tell
    assert refusing_encoder_fields(model) == {
        "colour": InputField(name="colour", type="string", allowed=COLOURS),
    }


def test_numpy_dtype_is_trusted_without_listing_it() -> None:
    """skops reports numpy.dtype for an imputed pipeline but builds it without calling a type."""
    pipeline = shop_pipeline(numeric=make_pipeline(SimpleImputer(), StandardScaler()))
    data = skops.io.dumps(pipeline)
    assert skops.io.get_untrusted_types(data=data) == ["numpy.dtype"]
    runtime = loaded(data)
    rows = shop_frame(4, seed=3)
    got = [p["probabilities"]["1"] for p in runtime.predict(rows.to_dict("records"), list(rows))]
    np.testing.assert_allclose(got, pipeline.predict_proba(rows)[:, 1], atol=1e-6)


# --- a row's answer does not depend on its batch ------------------------------------------------


def test_a_rows_answer_is_the_same_alone_and_beside_other_rows() -> None:
    """Column dtypes come from the schema: a null string is NaN (what the pipeline was fitted
    on) whether or not another row in the batch holds a string, and so on for every type."""
    data = shop_frame(40, seed=4)
    data.loc[::3, "colour"] = np.nan  # fitted on NaN for "unknown colour", as read_csv gives it
    columns = ColumnTransformer(
        [
            ("categories", OneHotEncoder(handle_unknown="ignore"), ["colour", "size"]),
            ("numbers", StandardScaler(), ["age", "income"]),
        ]
    )
    pipeline = make_pipeline(columns, LogisticRegression(max_iter=2000)).fit(
        data, bought(data.fillna({"colour": "blue"}))
    )
    runtime = loaded(joblib_bytes(pipeline))
    fields = [
        InputField(name="colour", type="string", nullable=True),
        InputField(name="size", type="string", allowed=SIZES),
        InputField(name="age", type="number", nullable=True),
        InputField(name="income", type="integer", nullable=True),
    ]
    runtime.bind_schema(fields)
    names = [f.name for f in fields]
    row = {"colour": None, "size": "S", "age": 30.0, "income": 2500}
    neighbour = {"colour": "red", "size": "L", "age": 50.0, "income": 3000}
    alone = runtime.predict([row], names)
    together = runtime.predict([row, neighbour], names)
    assert together[0] == alone[0]
    expected = pipeline.predict_proba(pd.DataFrame([row]).fillna(np.nan))[0, 1]
    assert alone[0]["probabilities"]["1"] == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("field", "value", "neighbours"),
    [
        (InputField(name="v", type="integer"), 9007199254740993, [1]),
        (InputField(name="v", type="integer", nullable=True), 9007199254740993, [None, 1]),
        (InputField(name="v", type="number", nullable=True), 0.1, [None, 1]),
        (InputField(name="v", type="boolean"), True, [False]),
        (InputField(name="v", type="boolean", nullable=True), True, [None, False]),
        (InputField(name="v", type="string", nullable=True), None, ["a"]),
        (InputField(name="v", type="string", nullable=True), "a", [None]),
        (InputField(name="v", type="any", nullable=True), 9007199254740993, [None, "a", 0.5]),
        (InputField(name="v", type="any", nullable=True), "a", [None, 1]),
        (InputField(name="v", type="any", nullable=True), None, ["a", 1, True]),
        (InputField(name="v", allowed=[1, 2], nullable=True), 2, [None, 1]),
    ],
)
def test_frame_dtypes_come_from_the_schema(
    field: InputField, value: Any, neighbours: list[Any]
) -> None:
    runtime = loaded(joblib_bytes(LinearRegression()), OutputSpec(kind="regressor"))
    runtime.bind_schema([field])
    alone = runtime._frame([{"v": value}], ["v"])
    for neighbour in neighbours:
        together = runtime._frame([{"v": value}, {"v": neighbour}], ["v"])
        pd.testing.assert_frame_equal(together.iloc[:1], alone)
    if field.type == "integer" and not field.nullable:
        assert alone["v"].tolist() == [value]  # int64 holds it exactly


def test_a_joblib_model_loads_without_importing_skops(tmp_path: Path) -> None:
    """skops imports every scikit-learn estimator (about a second of startup): only skops
    files need it."""
    script = (
        "import io, sys, joblib\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "from fastinfer.model.spec import OutputSpec\n"
        "from fastinfer.runtimes import create_runtime\n"
        "model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])\n"
        "buffer = io.BytesIO(); joblib.dump(model, buffer)\n"
        "runtime = create_runtime('sklearn', OutputSpec(kind='classifier'))\n"
        "runtime.load(buffer.getvalue())\n"
        "print('skops' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "False"
