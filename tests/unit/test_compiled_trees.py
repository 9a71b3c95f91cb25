"""The compiled path for fitted trees (runtimes/compiled/trees.py, issue 15): the pipeline's own
answers, bit for bit, or no compiled path at all."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier

from fastinfer.model.spec import load_model_directory
from fastinfer.repository.local import load_local
from fastinfer.runtimes.compiled import NotCompilable, compile_pipeline
from fastinfer.runtimes.compiled.trees import Trees, _float32_floor
from fastinfer.runtimes.sklearn import SklearnRuntime
from tests.unit.test_sklearn_compiled import (
    COLUMNS,
    FIELDS,
    compositions,
    fitted,
    pipeline_answers,
    prepared,
    request_rows,
)

CAR = Path(__file__).resolve().parents[2] / "examples" / "car_evaluation"


def car_grid() -> list[dict[str, Any]]:
    spec = importlib.util.spec_from_file_location("car_train_for_trees", CAR / "train.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    attributes: dict[str, tuple[str, ...]] = module.ATTRIBUTES
    return [
        dict(zip(attributes, values, strict=True))
        for values in itertools.product(*attributes.values())
    ]


def assert_identical(got: list[Any], expected: list[Any]) -> None:
    """The same labels and the same probabilities, to the last bit."""
    assert [p["label"] for p in got] == [p["label"] for p in expected]
    assert [p["probabilities"] for p in got] == [p["probabilities"] for p in expected]


def test_the_car_example_is_compiled_and_answers_the_whole_grid_as_its_pipeline() -> None:
    served = load_local(load_model_directory(CAR))
    runtime, schema = served.runtime, served.schema
    assert isinstance(runtime, SklearnRuntime) and schema is not None
    described = runtime.describe()
    assert described["compiled"] is True, described
    assert described["compiled_steps"].endswith("→ GradientBoostingClassifier")
    compiled = runtime._compiled
    assert compiled is not None
    rows = schema.validate_rows(car_grid())
    assert len(rows) == 1728
    estimator = runtime.estimator
    frame = pd.DataFrame(rows, columns=schema.columns)
    expected_proba = estimator.predict_proba(frame)
    expected_label = estimator.predict(frame).tolist()
    for size in (1, 7, 1728):
        for start in range(0, len(rows), size):
            batch = rows[start : start + size]
            answer = compiled(batch)
            assert answer is not None
            probabilities, chosen = answer
            assert np.array_equal(probabilities, expected_proba[start : start + size])
            assert estimator.classes_[chosen].tolist() == expected_label[start : start + size]


def numeric_model(model: Any) -> Any:
    return make_pipeline(
        ColumnTransformer(
            [
                ("cat", OneHotEncoder(handle_unknown="ignore"), ["size", "grade"]),
                ("num", StandardScaler(), ["age", "income"]),
            ]
        ),
        model,
    )


TREE_MODELS = {
    "decision tree": lambda: numeric_model(DecisionTreeClassifier(max_depth=6, random_state=0)),
    "random forest": lambda: numeric_model(
        RandomForestClassifier(n_estimators=15, max_depth=5, random_state=0)
    ),
    "extra trees": lambda: numeric_model(ExtraTreesClassifier(n_estimators=10, random_state=0)),
    "gradient boosting": lambda: numeric_model(
        GradientBoostingClassifier(n_estimators=30, max_depth=3, random_state=0)
    ),
    "gradient boosting, init zero": lambda: numeric_model(
        GradientBoostingClassifier(n_estimators=20, init="zero", learning_rate=0.2)
    ),
}


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("classes", [2, 3])
@pytest.mark.parametrize("name", list(TREE_MODELS))
def test_tree_models_answer_as_their_pipeline_in_every_batch_composition(
    name: str, classes: int, shared: bool
) -> None:
    estimator = fitted(TREE_MODELS[name], classes, seed=4, missing=False)
    runtime = prepared(estimator)
    described = runtime.describe()
    assert described["compiled"] is True, described
    compiled = runtime._compiled
    assert compiled is not None
    compiled.model._trees._shared = shared  # type: ignore[attr-defined]  # both walks
    rows = [r for r in request_rows(200, seed=9) if r["colour"] is not None]
    rows = [{**r, "age": 40.0 if r["age"] is None else r["age"]} for r in rows]
    rows[5]["age"] = 1e300  # beyond float32: the pipeline refuses it, the compiled path defers
    assert compiled(rows[5:6]) is None
    for batch in compositions(rows):
        try:
            expected = pipeline_answers(runtime, batch)
        except ValueError:
            assert compiled(batch) is None
            continue
        assert_identical(runtime.predict(batch, COLUMNS), expected)


def test_a_tree_that_reads_missing_values_leaves_them_to_the_pipeline() -> None:
    estimator = fitted(
        lambda: make_pipeline(
            ColumnTransformer(
                [
                    ("cat", OneHotEncoder(handle_unknown="error"), ["size"]),
                    ("num", "passthrough", ["age", "income"]),
                ]
            ),
            DecisionTreeClassifier(max_depth=5, random_state=0),
        ),
        seed=5,
    )
    runtime = prepared(estimator)
    assert runtime.describe()["compiled"] is True, runtime.describe()
    compiled = runtime._compiled
    assert compiled is not None
    good = {"colour": None, "size": "M", "grade": 2, "age": 40.0, "income": 1000}
    assert compiled([good]) is not None
    missing = {**good, "age": None}  # the tree routes NaN itself
    assert compiled([good, missing]) is None
    assert_identical(
        runtime.predict([good, missing], COLUMNS), pipeline_answers(runtime, [good, missing])
    )
    unknown = {**good, "size": "XL"}  # handle_unknown="error": the pipeline's own error
    assert compiled([good, unknown]) is None
    with pytest.raises(ValueError):
        runtime.predict([good, unknown], COLUMNS)


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (
            GradientBoostingClassifier(n_estimators=5, init=LogisticRegression()),
            "init=LogisticRegression",
        ),
        (GradientBoostingClassifier(n_estimators=5, loss="exponential"), "ExponentialLoss"),
        (RandomForestClassifier(n_estimators=5, n_jobs=2), "n_jobs=2"),
    ],
)
def test_tree_models_it_cannot_reproduce_are_named(model: Any, reason: str) -> None:
    estimator = fitted(lambda: numeric_model(model), missing=False)
    with pytest.raises(NotCompilable, match=reason):
        compile_pipeline(estimator, FIELDS)
    runtime = prepared(estimator)
    assert runtime.describe()["compiled"] is False
    assert reason in runtime.describe()["compiled_reason"]


def test_the_float32_comparison_is_the_float64_one() -> None:
    rng = np.random.default_rng(0)
    thresholds = np.concatenate(
        [rng.normal(0, 1e3, 2000), [0.5, -0.0, 1e39, -1e39, np.inf, 3.4028235e38, 1e-46]]
    )
    floors = _float32_floor(thresholds)
    assert floors.dtype == np.float32
    with np.errstate(over="ignore"):
        near = thresholds.astype(np.float32)
        x = np.concatenate(
            [
                near,
                np.nextafter(near, np.float32(np.inf)),
                np.nextafter(near, np.float32(-np.inf)),
            ]
        )
    x = x[np.isfinite(x)]
    for threshold, floor in zip(thresholds, floors, strict=True):
        assert np.array_equal(x <= threshold, x <= floor)


def test_trees_need_the_width_they_were_fitted_on() -> None:
    estimator = fitted(lambda: numeric_model(DecisionTreeClassifier(max_depth=3)), missing=False)
    tree = estimator[-1].tree_
    with pytest.raises(NotCompilable, match="reads feature"):
        Trees([tree], int(tree.feature.max()))
