"""The sklearn runtime's compiled pipeline path: the pipeline's own answers, without pandas.

Every supported structure is compared with the pipeline on many batch compositions (rows alone,
in small and large batches, with missing, unseen and edge values); unsupported steps, a failed
check and `runtime_options.compile: false` leave the pipeline in charge, and say why.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, MinMaxScaler, OneHotEncoder, StandardScaler

from bench.models.tabular import build_tabular_model_dir, tabular_rows
from fastinfer.model.spec import InputField, OutputSpec, load_model_directory
from fastinfer.repository.local import load_local
from fastinfer.runtimes import create_runtime
from fastinfer.runtimes.compiled import (
    TOLERANCE,
    NotCompilable,
    check_compiled,
    check_rows,
    compile_pipeline,
)
from fastinfer.runtimes.sklearn import SklearnRuntime
from tests.conftest import serve_in_process, sha256_of, wait_ready, write_config

COLOURS = ["blue", "green", "red"]
SIZES = ["L", "M", "S"]
FIELDS = [
    InputField(name="colour", type="string", nullable=True),
    InputField(name="size", type="string"),
    InputField(name="grade", type="integer"),
    InputField(name="age", type="number", nullable=True),
    InputField(name="income", type="integer"),
]
COLUMNS = [f.name for f in FIELDS]


def frame(n: int, seed: int, *, missing: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = pd.DataFrame(
        {
            "colour": rng.choice(COLOURS, n).astype(object),
            "size": rng.choice(SIZES, n),
            "grade": rng.integers(1, 4, n),
            "age": rng.normal(40, 12, n).round(1),
            "income": rng.integers(500, 6000, n),
        }
    )
    if missing:
        data.loc[rng.random(n) < 0.15, "colour"] = np.nan
        data.loc[rng.random(n) < 0.15, "age"] = np.nan
    return data


def target(data: pd.DataFrame, classes: int = 2) -> np.ndarray:
    score = data["age"].fillna(40).to_numpy() / 10 + (data["colour"] == "red") * 1.5
    score = score + data["grade"].to_numpy() * 0.7 - data["income"].to_numpy() / 2000
    return np.digitize(score, np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1]))


def request_rows(n: int, seed: int) -> list[dict[str, Any]]:
    """Rows as the runtime receives them: Python values, None for missing, some unseen values
    and extremes."""
    data = frame(n, seed)
    rows: list[dict[str, Any]] = []
    for record in data.to_dict("records"):
        rows.append(
            {
                "colour": None if not isinstance(record["colour"], str) else record["colour"],
                "size": str(record["size"]),
                "grade": int(record["grade"]),
                "age": None if np.isnan(record["age"]) else float(record["age"]),
                "income": int(record["income"]),
            }
        )
    rows[1]["colour"] = "purple"  # unseen in fit
    rows[2]["age"] = 1e300
    rows[3]["age"] = -0.0
    rows[4]["income"] = 9007199254740993  # beyond 2**53
    return rows


def imputed_numbers() -> Pipeline:
    return make_pipeline(SimpleImputer(strategy="median"), StandardScaler())


def columns(*branches: tuple[str, Any, list[str]], **options: Any) -> ColumnTransformer:
    return ColumnTransformer(list(branches), **options)


# Each builds an unfitted estimator over FIELDS' columns; all compile.
COMPILABLE: dict[str, Callable[[], Any]] = {
    "issue pipeline": lambda: make_pipeline(
        columns(
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["colour", "size", "grade"]),
            ("num", imputed_numbers(), ["age", "income"]),
        ),
        LogisticRegression(max_iter=2000),
    ),
    "nested, drop, remainder passthrough": lambda: Pipeline(
        [
            (
                "columns",
                columns(
                    (
                        "cat",
                        make_pipeline(
                            SimpleImputer(strategy="constant", fill_value="none"),
                            OneHotEncoder(drop="first", handle_unknown="ignore"),
                        ),
                        ["colour"],
                    ),
                    ("size", "drop", ["size"]),
                    ("age", make_pipeline(SimpleImputer(), MinMaxScaler(clip=True)), ["age"]),
                    remainder="passthrough",
                ),
            ),
            ("scale", StandardScaler()),
            ("model", LogisticRegression(max_iter=2000)),
        ]
    ),
    "positions, masks, infrequent_if_exist": lambda: make_pipeline(
        columns(
            ("cat", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=1), [0, 1]),
            ("num", imputed_numbers(), [False, False, True, True, False]),
            ("grade", StandardScaler(with_mean=False), slice(2, 3)),
        ),
        LogisticRegression(max_iter=2000),
    ),
    "nan category (no imputer)": lambda: make_pipeline(
        columns(
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["colour", "size"]),
            ("num", imputed_numbers(), ["age", "income", "grade"]),
        ),
        LogisticRegression(max_iter=2000, C=0.5),
    ),
}


def fitted(
    build: Callable[[], Any], classes: int = 2, seed: int = 0, *, missing: bool = True
) -> Any:
    data = frame(400, seed, missing=missing)
    return build().fit(data[COLUMNS], target(data, classes))


def prepared(
    estimator: Any,
    fields: list[InputField] | None = None,
    examples: list[dict[str, Any]] | None = None,
    **options: Any,
) -> SklearnRuntime:
    """A runtime as the registry makes it: loaded, schema bound, then prepared."""
    buffer = io.BytesIO()
    joblib.dump(estimator, buffer)
    runtime = create_runtime("sklearn", OutputSpec(kind="classifier"), options)
    assert isinstance(runtime, SklearnRuntime)
    runtime.load(buffer.getvalue())
    runtime.start()
    fields = fields or FIELDS
    runtime.bind_schema(fields)
    runtime.prepare(examples or [], [f.name for f in fields])
    return runtime


def pipeline_answers(runtime: SklearnRuntime, rows: list[dict[str, Any]]) -> list[Any]:
    compiled, runtime._compiled = runtime._compiled, None
    try:
        return runtime.predict(rows, COLUMNS)
    finally:
        runtime._compiled = compiled


def compositions(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Alone, in pairs, in odd-sized and large batches, and all together."""
    batches = [[row] for row in rows[:20]]
    for size in (2, 5, 33, 128):
        batches += [rows[i : i + size] for i in range(0, len(rows), size)]
    return [*batches, rows]


def assert_same(got: list[Any], expected: list[Any]) -> None:
    assert len(got) == len(expected)
    for mine, theirs in zip(got, expected, strict=True):
        assert mine["label"] == theirs["label"]
        assert mine["probabilities"].keys() == theirs["probabilities"].keys()
        for label, value in mine["probabilities"].items():
            assert abs(value - theirs["probabilities"][label]) <= TOLERANCE


@pytest.mark.parametrize("classes", [2, 3])
@pytest.mark.parametrize("name", list(COMPILABLE))
def test_compiled_answers_are_the_pipelines_in_every_batch_composition(
    name: str, classes: int
) -> None:
    estimator = fitted(COMPILABLE[name], classes)
    runtime = prepared(estimator)
    assert runtime.describe()["compiled"] is True, runtime.describe()
    rows = [r for r in request_rows(300, seed=7) if r["colour"] != "purple" or "ignore" in name]
    for batch in compositions(rows):
        assert_same(runtime.predict(batch, COLUMNS), pipeline_answers(runtime, batch))
    # And straight against the estimator itself (not only the runtime's pipeline path).
    complete = [r for r in rows if r["income"] < 2**53]
    data = pd.DataFrame(complete, columns=COLUMNS).astype({"colour": object}).fillna(np.nan)
    compiled = runtime._compiled
    assert compiled is not None
    answer = compiled(complete)
    assert answer is not None
    np.testing.assert_allclose(answer[0], estimator.predict_proba(data), rtol=0, atol=TOLERANCE)
    assert estimator.classes_[answer[1]].tolist() == estimator.predict(data).tolist()


def test_a_bare_logistic_regression_on_numbers_compiles() -> None:
    data = frame(200, 1, missing=False)[["grade", "age", "income"]]
    model = LogisticRegression(max_iter=2000).fit(data, target(frame(200, 1, missing=False)))
    fields = [FIELDS[2], InputField(name="age", type="number"), FIELDS[4]]
    runtime = prepared(model, fields)
    assert runtime.describe()["compiled"] is True
    rows = [{"grade": 2, "age": 31.5, "income": 1200}, {"grade": 1, "age": 70.0, "income": 5}]
    got = runtime.predict(rows, ["grade", "age", "income"])
    expected = model.predict_proba(pd.DataFrame(rows))
    assert [p["probabilities"]["1"] for p in got] == pytest.approx(expected[:, 1], abs=1e-15)


@pytest.mark.parametrize(
    ("build", "compiled", "reason"),
    [
        (
            lambda: make_pipeline(
                columns(("cat", OneHotEncoder(), ["size"]), remainder="drop"), GaussianNB()
            ),
            False,
            "final step GaussianNB",
        ),
        (
            lambda: make_pipeline(
                columns(
                    (
                        "cat",
                        OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=0.4),
                        ["size", "grade"],
                    ),
                ),
                LogisticRegression(),
            ),
            True,  # the ColumnTransformer runs as it is, the model is compiled
            "infrequent categories",
        ),
        (
            lambda: make_pipeline(
                columns(
                    ("cat", OneHotEncoder(handle_unknown="ignore"), ["size", "grade"]),
                    sparse_threshold=1.0,
                ),
                LogisticRegression(),
            ),
            False,  # it would run as it is, but its sparse matrix is left to the model
            "it answered none of the batches",
        ),
    ],
)
def test_what_it_cannot_compile_is_named(
    build: Callable[[], Any], compiled: bool, reason: str
) -> None:
    estimator = fitted(build)
    runtime = prepared(estimator)
    described = runtime.describe()
    assert described["compiled"] is compiled
    assert reason in str(described)
    rows = [r for r in request_rows(20, seed=3) if r["colour"] in COLOURS][:5]
    rows = [r for r in rows if r["income"] < 2**53]
    got = runtime.predict(rows, COLUMNS)
    data = pd.DataFrame(rows, columns=COLUMNS)
    assert [p["label"] for p in got] == [str(v) for v in estimator.predict(data)]


def test_the_option_turns_it_off_and_is_checked() -> None:
    estimator = fitted(COMPILABLE["issue pipeline"])
    runtime = prepared(estimator, compile=False)
    assert runtime.describe() == {
        "compiled": False,
        "compiled_reason": "turned off by runtime_options.compile: false",
    }
    assert runtime._compiled is None
    with pytest.raises(ValueError, match="compile must be true or false"):
        create_runtime("sklearn", OutputSpec(kind="classifier"), {"compile": "no"})


def test_regressors_and_unprepared_runtimes_are_not_compiled() -> None:
    runtime = create_runtime("sklearn", OutputSpec(kind="classifier"))
    assert runtime.describe()["compiled"] is False  # not checked yet: the pipeline answers


def test_what_the_pipeline_refuses_it_still_refuses() -> None:
    """An unknown category with handle_unknown="error", a NaN reaching the model: the compiled
    path defers, so the client gets the pipeline's own error."""
    estimator = fitted(
        lambda: make_pipeline(
            columns(
                ("cat", OneHotEncoder(), ["size", "grade"]),
                ("num", StandardScaler(), ["age", "income"]),
            ),
            LogisticRegression(max_iter=2000),
        ),
        seed=2,
        missing=False,
    )
    runtime = prepared(estimator)
    assert runtime.describe()["compiled"] is True
    good = {"colour": None, "size": "M", "grade": 2, "age": 40.0, "income": 1000}
    assert runtime._compiled is not None and runtime._compiled([good]) is not None
    for bad in ({**good, "size": "XL"}, {**good, "grade": 7}, {**good, "age": None}):
        assert runtime._compiled([good, bad]) is None
        with pytest.raises(ValueError):
            runtime.predict([good, bad], COLUMNS)


def test_the_check_refuses_a_path_that_differs() -> None:
    estimator = fitted(COMPILABLE["issue pipeline"])
    compiled = compile_pipeline(estimator, FIELDS)
    runtime = prepared(estimator)

    def pipeline(batch: list[dict[str, Any]]) -> tuple[Any, list[int]]:
        return runtime._classify(runtime._frame(batch, COLUMNS))

    rows = check_rows(compiled, FIELDS, [], None, count=40)
    assert check_compiled(compiled, pipeline, rows).mismatch is None
    model: Any = compiled.model
    model._intercept = model._intercept + 1e-9  # one ulp-scale slip is enough to refuse
    result = check_compiled(compiled, pipeline, rows)
    assert result.mismatch is not None and "differ" in result.mismatch


def test_compile_refuses_a_schema_that_is_not_the_pipelines() -> None:
    estimator = fitted(COMPILABLE["issue pipeline"])
    with pytest.raises(NotCompilable, match="schema's columns"):
        compile_pipeline(estimator, list(reversed(FIELDS)))
    boolean = [*FIELDS[:2], InputField(name="grade", type="boolean"), *FIELDS[3:]]
    with pytest.raises(NotCompilable, match="grade"):
        compile_pipeline(estimator, boolean)


def test_metadata_reports_the_compiled_path(tmp_path: Path) -> None:
    estimator = fitted(COMPILABLE["issue pipeline"])
    directory = tmp_path / "shop"
    directory.mkdir()
    joblib.dump(estimator, directory / "model.joblib")
    example = {"colour": "red", "size": "M", "grade": 1, "age": 50.0, "income": 3000}
    config = {
        "name": "shop",
        "version": "1",
        "runtime": "sklearn",
        "artefact": {"path": "model.joblib", "sha256": sha256_of(directory / "model.joblib")},
        "inputs": [f.model_dump(exclude_none=True) for f in FIELDS],
        "example": example,
        "output": {"kind": "classifier"},
    }
    write_config(directory, config)
    with serve_in_process(directory) as client:
        wait_ready(client)
        meta = client.get("/v1/models/shop").json()
        answer = client.post("/v1/models/shop/predict", json={"inputs": [example]}).json()
    assert meta["runtime_info"]["compiled"] is True, meta["runtime_info"]
    assert "rows in" in meta["runtime_info"]["compiled_check"]
    expected = estimator.predict_proba(pd.DataFrame([example]))[0]
    assert answer["predictions"][0]["probabilities"]["1"] == pytest.approx(expected[1], abs=1e-15)

    write_config(directory, {**config, "runtime_options": {"compile": False}})
    with serve_in_process(directory) as client:
        wait_ready(client)
        meta = client.get("/v1/models/shop").json()
    assert meta["runtime_info"] == {
        "compiled": False,
        "compiled_reason": "turned off by runtime_options.compile: false",
    }


def test_the_bench_tabular_pipeline_is_compiled_and_answers_as_sklearn(tmp_path: Path) -> None:
    """bench/models/tabular.py (issue 15's workload), loaded as the server loads it."""
    directory = build_tabular_model_dir(tmp_path / "tabular", rows=400)
    model = load_local(load_model_directory(directory))
    assert model.runtime is not None and model.schema is not None
    assert model.runtime.describe()["compiled"] is True, model.runtime.describe()
    pipeline = joblib.load(directory / "model.joblib")
    raw = tabular_rows(64)
    rows = model.schema.validate_rows(raw)
    for batch in ([rows[0]], rows[:16], rows):
        got = model.runtime.predict(batch, model.schema.columns)
        data = pd.DataFrame(raw[: len(batch)])
        expected = pipeline.predict_proba(data)[:, 1]
        assert [p["probabilities"]["survived"] for p in got] == pytest.approx(expected, abs=1e-15)
        labels = ["survived" if v == 1 else "died" for v in pipeline.predict(data)]
        assert [p["label"] for p in got] == labels


def test_steps_it_cannot_compile_run_as_they_are_before_a_compiled_model() -> None:
    """A step of someone else's (here a FunctionTransformer with a function) keeps its column
    transformer as it is; the LogisticRegression after it is still compiled, and answers as
    the pipeline does."""
    estimator = fitted(
        lambda: make_pipeline(
            columns(
                ("cat", OneHotEncoder(handle_unknown="ignore"), ["size"]),
                ("num", FunctionTransformer(np.log1p), ["grade", "income"]),
            ),
            StandardScaler(),
            LogisticRegression(max_iter=2000),
        ),
        classes=3,
    )
    runtime = prepared(estimator)
    described = runtime.describe()
    assert described["compiled"] is True, described
    assert described["compiled_steps"].startswith("ColumnTransformer run as they are (")
    assert "FunctionTransformer" in described["compiled_steps"]
    rows = [r for r in request_rows(120, seed=5) if r["income"] < 2**53]
    for batch in compositions(rows):
        assert_same(runtime.predict(batch, COLUMNS), pipeline_answers(runtime, batch))
    with pytest.raises(NotCompilable, match="FunctionTransformer"):
        compile_pipeline(estimator, FIELDS)  # without a frame there is no way to run it


class Engineered(BaseEstimator, TransformerMixin):  # type: ignore[misc]
    """A feature step of one's own, as examples/titanic has: it reads a DataFrame in
    `transform` and, with `transform_rows`, the rows themselves. `rows_offset` and `rows_raise`
    make its `transform_rows` wrong or failing, as a user's could be."""

    def __init__(self, rows_offset: float = 0.0, rows_raise: bool = False) -> None:
        self.rows_offset = rows_offset
        self.rows_raise = rows_raise

    def fit(self, X: pd.DataFrame, y: Any = None) -> Engineered:
        self.median_ = float(np.nanmedian(X["age"].to_numpy(dtype=np.float64, na_value=np.nan)))
        self.feature_names_in_ = np.asarray(list(X.columns), dtype=object)
        self.n_features_in_ = len(X.columns)
        return self

    def _features(self, age: np.ndarray, income: np.ndarray, grade: np.ndarray) -> np.ndarray:
        age = np.where(np.isnan(age), self.median_, age)
        return np.column_stack([age / 10, np.log1p(income), grade])

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        return self._features(
            X["age"].to_numpy(dtype=np.float64, na_value=np.nan),
            X["income"].to_numpy(dtype=np.float64),
            X["grade"].to_numpy(dtype=np.float64),
        )

    def transform_rows(self, rows: list[dict[str, Any]]) -> np.ndarray:
        if self.rows_raise and any(row["age"] is None for row in rows):
            raise ValueError("no age")
        age = [np.nan if row["age"] is None else row["age"] for row in rows]
        features = self._features(
            np.asarray(age, dtype=np.float64),
            np.asarray([row["income"] for row in rows], dtype=np.float64),
            np.asarray([row["grade"] for row in rows], dtype=np.float64),
        )
        return features + self.rows_offset


def engineered_runtime(**options: Any) -> SklearnRuntime:
    return prepared(fitted(lambda: make_pipeline(Engineered(**options), LogisticRegression())))


def test_a_step_with_transform_rows_reads_the_rows_without_a_dataframe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runtime = engineered_runtime()
    described = runtime.describe()
    assert described["compiled"] is True, described
    assert "Engineered run as they are" in described["compiled_steps"]
    assert "transform_rows" in described["compiled_steps"]
    rows = [r for r in request_rows(120, seed=6) if r["income"] < 2**53]
    expected = [pipeline_answers(runtime, batch) for batch in compositions(rows)]

    def no_frame(*_: Any) -> None:
        raise AssertionError("a DataFrame was built")

    monkeypatch.setattr(runtime, "_frame", no_frame)
    for batch, answers in zip(compositions(rows), expected, strict=True):
        assert_same(runtime.predict(batch, COLUMNS), answers)


def test_a_transform_rows_that_differs_from_transform_is_not_used() -> None:
    runtime = engineered_runtime(rows_offset=1e-3)
    described = runtime.describe()
    assert described["compiled"] is True, described  # on the DataFrame, as the pipeline
    assert "transform_rows" not in described["compiled_steps"]
    assert described["compiled_rows_step"].startswith("not used, it differs: probabilities")
    rows = [r for r in request_rows(120, seed=7) if r["income"] < 2**53]
    for batch in compositions(rows):
        assert_same(runtime.predict(batch, COLUMNS), pipeline_answers(runtime, batch))


def test_a_batch_transform_rows_fails_on_is_answered_by_the_pipeline() -> None:
    runtime = engineered_runtime(rows_raise=True)
    assert "transform_rows" in runtime.describe()["compiled_steps"]
    rows = [r for r in request_rows(120, seed=8) if r["income"] < 2**53]
    assert any(r["age"] is None for r in rows) and any(r["age"] is not None for r in rows)
    for batch in compositions(rows):
        assert_same(runtime.predict(batch, COLUMNS), pipeline_answers(runtime, batch))
