"""Bare artefacts (`fastinfer serve --model NAME=PATH[#sha256:HEX]`): the runtime from the file,
the output kind from the artefact, the pin rules of docs/model-format.md.

Each is loaded with `load_local`, which runs the registry exactly as `fastinfer serve` does.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import skops.io
from onnx import TensorProto, helper
from sklearn.linear_model import LinearRegression, LogisticRegression

from fastinfer.model.spec import ModelConfigError
from fastinfer.repository.local import ModelLoadError, load_local
from fastinfer.repository.registry import parse_model_option
from fastinfer.repository.served import ServedModel
from fastinfer.repository.state import source_of
from tests.conftest import sha256_of
from tests.unit.test_onnx_runtime import make_model, tabular_regressor
from tests.unit.test_tree_runtimes import (
    LGB_RENAME,
    binary_target,
    frame,
    lgb_frame,
    lgb_text,
    regression_target,
    rows_of,
    saved,
    train_lgb,
    train_xgb,
)

X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.0], [4.0, 1.0], [5.0, 0.0]])
Y = np.array([0, 0, 0, 1, 1, 1])
WEIGHTS = np.array([[0.5, -1.0, 0.25], [-0.5, 1.0, -0.25]], dtype=np.float32)
BIASES = np.array([0.1, -0.1], dtype=np.float32)


def skl2onnx_classifier() -> bytes:
    """A logistic regression as skl2onnx converts it (zipmap=False): one float input
    `float_input` [N,3]; outputs `label` [N] and `probabilities` [N,2]."""
    return make_model(
        [
            helper.make_node(
                "LinearClassifier",
                ["float_input"],
                ["label", "probabilities"],
                domain="ai.onnx.ml",
                coefficients=WEIGHTS.flatten().tolist(),
                intercepts=BIASES.tolist(),
                classlabels_ints=[0, 1],
                post_transform="SOFTMAX",
            )
        ],
        [helper.make_tensor_value_info("float_input", TensorProto.FLOAT, [None, 3])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2]),
        ],
    )


def skl2onnx_probabilities(features: np.ndarray) -> np.ndarray:
    scores = features @ WEIGHTS.T + BIASES
    exp = np.exp(scores - scores.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def joblib_bytes(model: Any, **options: Any) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(model, buffer, **options)
    return buffer.getvalue()


class Marker:
    """Unpickling this creates the file `path`: proof that a pickle was loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def bare(name: str, path: Path, *, pinned: bool, trust_unpinned: bool = False) -> ServedModel:
    option = f"{name}={path}" + (f"#sha256:{sha256_of(path)}" if pinned else "")
    return load_local(parse_model_option(option), trust_unpinned=trust_unpinned)


def predict(model: ServedModel, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    assert model.schema is not None and model.runtime is not None
    return model.runtime.predict(model.schema.validate_rows(rows), model.schema.columns)


def refusal(name: str, path: Path, *, pinned: bool) -> str:
    with pytest.raises(ModelLoadError) as caught:
        bare(name, path, pinned=pinned)
    return str(caught.value.reason)


# --- formats whose loaders run no code: no pin needed --------------------------------------------


def test_unpinned_onnx_loads_as_a_classifier_and_predicts(tmp_path: Path) -> None:
    model = bare("onnx", write(tmp_path / "m.onnx", skl2onnx_classifier()), pinned=False)
    assert (model.config.runtime, model.config.output.kind) == ("onnx", "classifier")
    (prediction,) = predict(model, [{"float_input": [1.0, 2.0, 3.0]}])
    expected = skl2onnx_probabilities(np.array([[1.0, 2.0, 3.0]]))[0]
    got = [prediction["probabilities"][label] for label in ("0", "1")]
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_unpinned_onnx_regressor_loads_as_a_regressor(tmp_path: Path) -> None:
    model = bare("onnxreg", write(tmp_path / "r.onnx", tabular_regressor()), pinned=False)
    assert model.config.output.kind == "regressor"
    assert predict(model, [{"age": 2.0, "count": 3, "colour": "red"}]) == [{"value": 17.0}]


def test_unpinned_xgboost_json_loads_with_its_kind(tmp_path: Path) -> None:
    data = frame()
    classifier = train_xgb({"objective": "binary:logistic"}, data, binary_target(data))
    model = bare("xgb", write(tmp_path / "c.json", saved(classifier, "json")), pinned=False)
    assert (model.config.runtime, model.config.output.kind) == ("xgboost", "classifier")
    regressor = train_xgb({"objective": "reg:squarederror"}, data, regression_target(data))
    model = bare("xgbreg", write(tmp_path / "r.json", saved(regressor, "json")), pinned=False)
    assert model.config.output.kind == "regressor"
    row = {"age": 50.0, "visits": 2, "colour": "red", "member": True}
    assert isinstance(predict(model, [row])[0]["value"], float)


def test_unpinned_skops_loads(tmp_path: Path) -> None:
    estimator = LinearRegression().fit(X, Y)
    model = bare("skops", write(tmp_path / "m.skops", skops.io.dumps(estimator)), pinned=False)
    assert (model.config.runtime, model.config.output.kind) == ("sklearn", "regressor")


# --- formats that need a pin, refused for their own reason ---------------------------------------


def test_lightgbm_text_and_xgboost_ubj_need_a_pin_for_their_own_reasons(tmp_path: Path) -> None:
    target = regression_target(frame())
    booster = train_lgb({"objective": "huber"}, lgb_frame(), target)
    text = write(tmp_path / "m.txt", lgb_text(booster))
    reason = refusal("lgb", text, pinned=False)
    assert "no sha256 pin" in reason and "LightGBM's text parser crashed" in reason
    assert "pickle" not in reason
    model = bare("lgb", text, pinned=True)
    assert (model.config.runtime, model.config.output.kind) == ("lightgbm", "regressor")
    sample = lgb_frame().iloc[:5]
    got = [p["value"] for p in predict(model, rows_of(sample, LGB_RENAME))]
    np.testing.assert_allclose(got, booster.predict(sample), rtol=1e-6)
    ubj = write(tmp_path / "m.ubj", saved(train_xgb({}, frame(), target), "ubj"))
    reason = refusal("ubj", ubj, pinned=False)
    assert "XGBoost's UBJSON parser" in reason and "pickle" not in reason
    assert bare("ubj", ubj, pinned=True).config.output.kind == "regressor"


def test_a_pinned_scikit_learn_regressor_loads_as_a_regressor(tmp_path: Path) -> None:
    path = write(tmp_path / "m.joblib", joblib_bytes(LinearRegression().fit(X, Y)))
    assert "a pickle runs any code" in refusal("reg", path, pinned=False)
    model = bare("reg", path, pinned=True)
    assert model.config.output.kind == "regressor"
    (prediction,) = predict(model, [{"x0": 4.0, "x1": 1.0}])
    assert prediction["value"] == pytest.approx(LinearRegression().fit(X, Y).predict(X[4:5])[0])
    classifier = write(tmp_path / "c.joblib", joblib_bytes(LogisticRegression().fit(X, Y)))
    assert bare("clf", classifier, pinned=True).config.output.kind == "classifier"


# --- a file that is not what its name says is never loaded ---------------------------------------


def test_a_pinned_pickle_named_onnx_is_refused_and_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    evil = write(tmp_path / "evil.onnx", pickle.dumps(Marker(marker)))
    for option in (f"evil={evil}#sha256:{sha256_of(evil)}", f"evil={evil}"):
        with pytest.raises(ModelConfigError, match="evil.onnx is not an ONNX model") as caught:
            parse_model_option(option)
        assert "a Python pickle" in str(caught.value)
    assert not marker.exists()


def test_a_file_swapped_after_parsing_is_checked_again_before_loading(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = write(tmp_path / "m.onnx", skl2onnx_classifier())
    evil = pickle.dumps(Marker(marker))
    (tmp_path / "evil").write_bytes(evil)
    directory = parse_model_option(f"m={path}#sha256:{sha256_of(tmp_path / 'evil')}")
    path.write_bytes(evil)  # swapped for a pickle whose sha256 is the pin
    with pytest.raises(ModelLoadError, match="m.onnx is not an ONNX model"):
        load_local(directory)
    assert not marker.exists()


def test_a_reloaded_bare_version_is_still_bare(tmp_path: Path) -> None:
    path = write(tmp_path / "m.joblib", joblib_bytes(LinearRegression().fit(X, Y)))
    directory = parse_model_option(f"m={path}#sha256:{sha256_of(path)}")
    again = source_of(directory, bare=True).directory("m", "unversioned")
    assert again.bare and again.config.runtime == "sklearn"
    assert load_local(again).config.output.kind == "regressor"
