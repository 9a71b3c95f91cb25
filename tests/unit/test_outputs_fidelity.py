"""Fidelity (issue 13): every runtime serves the model's probabilities unrounded, bitwise, and
the label its own decision rule gives, even where that is not the most probable class."""

from __future__ import annotations

import io
from typing import Any

import joblib
import lightgbm as lgb
import numpy as np
import onnxruntime as ort
import orjson
import pandas as pd
import pytest
import xgboost as xgb
from onnx import TensorProto, helper, numpy_helper
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.svm import SVC

from fastinfer.model.spec import OutputSpec
from fastinfer.runtimes import Runtime, create_runtime
from tests.unit.test_onnx_runtime import make_model

pytestmark = pytest.mark.filterwarnings("ignore:The `probability` parameter:FutureWarning")

NAMES = ["a", "b", "c"]


def features(n: int, seed: int) -> pd.DataFrame:
    return pd.DataFrame(np.random.default_rng(seed).normal(size=(n, 3)), columns=NAMES)


def noisy_classes(data: pd.DataFrame, seed: int, classes: int = 2) -> np.ndarray:
    score = data["a"].to_numpy() + 0.8 * np.random.default_rng(seed).normal(size=len(data))
    return np.digitize(score, np.linspace(-0.5, 0.5, classes - 1) if classes > 2 else [0.0])


def rows_of(data: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: float(v) for k, v in row.items()} for row in data.to_dict("records")]


def served(runtime: Runtime, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    fields = runtime.derived_inputs()
    assert fields is not None
    runtime.bind_schema(fields)
    return runtime.predict(rows, [f.name for f in fields])


def loaded(kind: str, data: bytes, labels: dict[str, str] | None = None, **options: Any) -> Runtime:
    runtime = create_runtime(kind, OutputSpec(kind="classifier", labels=labels), options)
    runtime.load(data)
    runtime.start()
    return runtime


def joblib_bytes(estimator: Any) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(estimator, buffer)
    return buffer.getvalue()


def table(predictions: list[dict[str, Any]]) -> np.ndarray:
    return np.array([list(p["probabilities"].values()) for p in predictions], dtype=np.float64)


def assert_bitwise(predictions: list[dict[str, Any]], expected: Any) -> None:
    """The served probabilities are the expected float64 values, bit for bit, also once through
    orjson (the JSON encoder of v1, v2 and the CLI): shortest round-trip floats."""
    want = np.asarray(expected, dtype=np.float64)
    got = table(predictions)
    assert got.shape == want.shape
    assert got.tobytes() == want.tobytes()
    assert table(orjson.loads(orjson.dumps(predictions))).tobytes() == want.tobytes()


# --- scikit-learn -------------------------------------------------------------------------------


def test_tiny_probabilities_are_served_as_computed_not_rounded_to_zero() -> None:
    """Below 5e-7 a probability used to become 0.0 and rows stopped summing as the model's do."""
    model = LogisticRegression().fit(np.array([[-1.0], [1.0]]), [0, 1])
    model.coef_, model.intercept_ = np.array([[1.0]]), np.array([0.0])
    data = np.array([[-40.0], [-20.0], [-15.0], [0.3], [16.0], [35.0]])
    runtime = loaded("sklearn", joblib_bytes(model))
    predictions = served(runtime, [{"x0": float(x)} for x in data[:, 0]])
    expected = model.predict_proba(data)
    assert_bitwise(predictions, expected)
    tiny = (expected > 0) & (expected < 5e-7)
    assert tiny.sum() >= 4 and (table(predictions)[tiny] > 0).all()
    np.testing.assert_array_equal(table(predictions).sum(axis=1), expected.sum(axis=1))
    assert [p["label"] for p in predictions] == [str(v) for v in model.predict(data)]


def test_svc_labels_are_its_predict_where_the_probabilities_disagree() -> None:
    train = features(300, seed=0)
    model = SVC(probability=True, random_state=0).fit(train, noisy_classes(train, seed=1))
    data = features(1000, seed=2)
    expected_labels = model.predict(data)
    expected = model.predict_proba(data)
    assert (expected.argmax(axis=1) != expected_labels).sum() >= 3  # the case under test
    runtime = loaded("sklearn", joblib_bytes(model), labels={"0": "no", "1": "yes"})
    predictions = served(runtime, rows_of(data))
    assert [p["label"] for p in predictions] == [["no", "yes"][v] for v in expected_labels]
    assert_bitwise(predictions, expected)


def test_a_probability_tie_gets_the_label_predict_gives() -> None:
    """predict_proba is exactly [0.5, 0.5] where the decision function is 1e-17, but
    LogisticRegression.predict says class 1 there (decision > 0); argmax would say class 0."""
    model = LogisticRegression().fit(np.array([[-1.0], [1.0]]), ["left", "right"])
    model.coef_, model.intercept_ = np.array([[1.0]]), np.array([0.0])
    data = np.array([[1e-17], [0.0], [-1e-17]])
    expected = model.predict_proba(data)
    assert expected.tolist() == [[0.5, 0.5]] * 3
    assert model.predict(data).tolist() == ["right", "left", "left"]
    predictions = served(
        loaded("sklearn", joblib_bytes(model)), [{"x0": 1e-17}, {"x0": 0.0}, {"x0": -1e-17}]
    )
    assert [p["label"] for p in predictions] == ["right", "left", "left"]
    assert_bitwise(predictions, expected)


TRANSFORMS: list[int] = []


def counted(values: Any) -> Any:
    TRANSFORMS.append(len(values))
    return values


def test_a_pipeline_transforms_once_for_both_calls_and_answers_as_its_own_methods() -> None:
    train = features(300, seed=3)
    inner = Pipeline(
        [
            ("count", FunctionTransformer(counted)),
            ("skip", "passthrough"),
            ("svc", SVC(probability=True, random_state=0)),
        ]
    )
    model = Pipeline([("inner", inner)]).fit(train, noisy_classes(train, seed=4))
    data = features(400, seed=5)
    runtime = loaded("sklearn", joblib_bytes(model))
    TRANSFORMS.clear()
    predictions = served(runtime, rows_of(data))
    assert TRANSFORMS == [400]  # the pipeline's steps ran once, not once per method
    assert [p["label"] for p in predictions] == [str(v) for v in model.predict(data)]
    assert_bitwise(predictions, model.predict_proba(data))


def test_forest_labels_are_argmax_which_is_its_predict_ties_included() -> None:
    train = features(200, seed=6)
    model = RandomForestClassifier(n_estimators=2, random_state=0)  # pure leaves: ties
    model.fit(train, noisy_classes(train, seed=7, classes=3))
    data = features(400, seed=8)
    expected = model.predict_proba(data)
    assert (np.sort(expected, axis=1)[:, -1] == np.sort(expected, axis=1)[:, -2]).any()  # ties
    predictions = served(loaded("sklearn", joblib_bytes(model)), rows_of(data))
    assert [p["label"] for p in predictions] == [str(v) for v in model.predict(data)]
    assert_bitwise(predictions, expected)


# --- XGBoost and LightGBM: their scikit-learn classifiers are the reference -------------------


@pytest.mark.parametrize("classes", [2, 3])
def test_xgboost_labels_and_probabilities_are_xgbclassifiers(classes: int) -> None:
    train = features(400, seed=9)
    model = xgb.XGBClassifier(n_estimators=8, max_depth=3, n_jobs=1, random_state=0)
    model.fit(train, noisy_classes(train, seed=10, classes=classes))
    data = features(300, seed=11)
    runtime = loaded("xgboost", bytes(model.get_booster().save_raw("json")))
    predictions = served(runtime, rows_of(data))
    assert [p["label"] for p in predictions] == [str(v) for v in model.predict(data)]
    assert_bitwise(predictions, model.predict_proba(data))  # float32, widened exactly


def test_xgboost_an_exact_half_is_class_0_as_xgbclassifier_predicts() -> None:
    train = features(50, seed=12)
    model = xgb.XGBClassifier(n_estimators=1, learning_rate=0.0, base_score=0.5, n_jobs=1)
    model.fit(train, noisy_classes(train, seed=13))
    data = features(5, seed=14)
    assert model.predict_proba(data).tolist() == [[0.5, 0.5]] * 5
    predictions = served(
        loaded("xgboost", bytes(model.get_booster().save_raw("json"))), rows_of(data)
    )
    assert [p["label"] for p in predictions] == [str(v) for v in model.predict(data)] == ["0"] * 5


@pytest.mark.parametrize("classes", [2, 3])
def test_lightgbm_labels_and_probabilities_are_lgbmclassifiers(classes: int) -> None:
    train = features(400, seed=15)
    model = lgb.LGBMClassifier(n_estimators=8, num_leaves=7, n_jobs=1, verbose=-1)
    model.fit(train, noisy_classes(train, seed=16, classes=classes))
    data = features(300, seed=17)
    runtime = loaded("lightgbm", model.booster_.model_to_string().encode())
    predictions = served(runtime, rows_of(data))
    assert [p["label"] for p in predictions] == [str(v) for v in model.predict(data)]
    assert_bitwise(predictions, model.predict_proba(data))


# --- ONNX: the graph's own label output ---------------------------------------------------------


def disagreeing_graph() -> bytes:
    """Probabilities from one linear map, the label from another: they disagree on some rows."""
    rng = np.random.default_rng(18)
    w_probs = rng.normal(size=(3, 3)).astype(np.float32)
    w_label = (w_probs + rng.normal(scale=0.5, size=(3, 3))).astype(np.float32)
    return make_model(
        [
            helper.make_node("MatMul", ["x", "wp"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
            helper.make_node("MatMul", ["x", "wl"], ["votes"]),
            helper.make_node("ArgMax", ["votes"], ["label"], axis=1, keepdims=0),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [
            helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 3]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3]),
        ],
        [numpy_helper.from_array(w_probs, "wp"), numpy_helper.from_array(w_label, "wl")],
    )


def test_onnx_label_is_the_graphs_label_output_not_argmax() -> None:
    graph = disagreeing_graph()
    data = np.random.default_rng(19).normal(size=(300, 3)).astype(np.float32)
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    probs, label = session.run(["probs", "label"], {"x": data})
    assert (probs.argmax(axis=1) != label).sum() >= 10
    labels = {"0": "cat", "1": "dog", "2": "bird"}
    runtime = loaded("onnx", graph, labels=labels)
    predictions = runtime.predict([{"x": row.tolist()} for row in data], ["x"])
    assert [p["label"] for p in predictions] == [labels[str(v)] for v in label]
    assert_bitwise(predictions, probs)


def linear_classifier_graph(zipmap: bool) -> bytes:
    """As skl2onnx converts a multinomial logistic regression of string classes."""
    classes = ["acc", "good", "unacc"]
    coefficients = np.random.default_rng(20).normal(size=9).round(3).tolist()
    nodes = [
        helper.make_node(
            "LinearClassifier",
            ["x"],
            ["label", "scores"],
            domain="ai.onnx.ml",
            classlabels_strings=classes,
            coefficients=coefficients,
            intercepts=[0.1, -0.2, 0.05],
            multi_class=1,
            post_transform="SOFTMAX",
        )
    ]
    if zipmap:
        nodes.append(
            helper.make_node(
                "ZipMap",
                ["scores"],
                ["probabilities"],
                domain="ai.onnx.ml",
                classlabels_strings=classes,
            )
        )
        probabilities = helper.make_value_info(
            "probabilities",
            helper.make_sequence_type_proto(
                helper.make_map_type_proto(
                    TensorProto.STRING, helper.make_tensor_type_proto(TensorProto.FLOAT, [])
                )
            ),
        )
    else:
        nodes.append(helper.make_node("Identity", ["scores"], ["probabilities"]))
        probabilities = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 3])
    return make_model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("label", TensorProto.STRING, ["N"]), probabilities],
    )


def test_onnx_string_label_output_with_zipmap_probabilities() -> None:
    graph = linear_classifier_graph(zipmap=True)
    data = np.random.default_rng(21).normal(size=(200, 3)).astype(np.float32)
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    label, maps = session.run(None, {"x": data})
    runtime = loaded("onnx", graph)
    predictions = runtime.predict([{"x": row.tolist()} for row in data], ["x"])
    assert [p["label"] for p in predictions] == list(label)
    assert_bitwise(predictions, [[m[k] for k in ("acc", "good", "unacc")] for m in maps])


def test_onnx_string_labels_with_a_plain_tensor_need_the_columns_named() -> None:
    graph = linear_classifier_graph(zipmap=False)
    data = np.random.default_rng(22).normal(size=(50, 3)).astype(np.float32)
    rows = [{"x": row.tolist()} for row in data]
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    label, probs = session.run(None, {"x": data})
    named = loaded("onnx", graph, labels={"0": "acc", "1": "good", "2": "unacc"})
    predictions = named.predict(rows, ["x"])
    assert [p["label"] for p in predictions] == list(label)
    assert_bitwise(predictions, probs)
    with pytest.raises(ValueError, match=r"answered class 'unacc'.*name its columns by class"):
        loaded("onnx", graph).predict(rows, ["x"])


def test_onnx_label_output_option_is_checked() -> None:
    graph = disagreeing_graph()
    with pytest.raises(ValueError, match="label_output 'nope' is not an output"):
        loaded("onnx", graph, label_output="nope")
    with pytest.raises(ValueError, match="'probs' is not an output of the graph besides"):
        loaded("onnx", graph, label_output="probs")
    with pytest.raises(TypeError, match=r"'logits' is a tensor\(float\) of shape \['N', 3\]"):
        loaded("onnx", graph, label_output="logits")
