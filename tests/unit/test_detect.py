"""fastinfer.runtimes.detect: which runtime reads a file, and what kind of model it holds.

The same functions decide for `fastinfer init` and for a bare `fastinfer serve --model`.
Every artefact is built here, small and deterministic.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import skops.io
from sklearn.linear_model import LinearRegression, LogisticRegression

from fastinfer.runtimes.detect import (
    COMPRESSED,
    HEAD_BYTES,
    LIGHTGBM,
    ONNX,
    PICKLE,
    XGBOOST_JSON,
    XGBOOST_UBJ,
    ZIP,
    ArtefactFormatError,
    KindError,
    content_format,
    detect_runtime,
    open_as,
)
from fastinfer.runtimes.onnx import OnnxRuntime
from tests.unit.test_onnx_runtime import softmax_classifier, tabular_regressor
from tests.unit.test_registry_bare import Marker, joblib_bytes
from tests.unit.test_tree_runtimes import (
    frame,
    lgb_frame,
    lgb_text,
    regression_target,
    saved,
    train_lgb,
    train_xgb,
)

X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.0], [4.0, 1.0], [5.0, 0.0]])
Y = np.array([0, 0, 0, 1, 1, 1])


@pytest.fixture(scope="module")
def artefacts() -> dict[str, bytes]:
    xgb_booster = train_xgb({"objective": "binary:logistic"}, frame(), Y.repeat(20))
    return {
        "joblib": joblib_bytes(LogisticRegression().fit(X, Y)),
        "compressed": joblib_bytes(LogisticRegression().fit(X, Y), compress=3),
        "skops": skops.io.dumps(LogisticRegression().fit(X, Y)),
        "onnx": softmax_classifier(),
        "xgboost json": saved(xgb_booster, "json"),
        "xgboost ubj": saved(xgb_booster, "ubj"),
        "lightgbm": lgb_text(train_lgb({"objective": "huber"}, lgb_frame(), np.arange(120.0))),
    }


def test_content_formats_from_the_first_bytes(artefacts: dict[str, bytes]) -> None:
    expected = {
        "joblib": PICKLE,
        "compressed": COMPRESSED,
        "skops": ZIP,
        "onnx": ONNX,
        "xgboost json": XGBOOST_JSON,
        "xgboost ubj": XGBOOST_UBJ,
        "lightgbm": LIGHTGBM,
    }
    assert {k: content_format(v[:HEAD_BYTES]) for k, v in artefacts.items()} == expected
    assert content_format(b'  {\n  "learner": {}}') == XGBOOST_JSON  # pretty-printed
    assert content_format(b"") is None
    assert content_format(b"hello, world") is None
    assert content_format(b"\x08\x00") is None  # ir_version 0: no ONNX model has it


@pytest.mark.parametrize(
    ("file_name", "artefact", "runtime"),
    [
        ("m.joblib", "joblib", "sklearn"),
        ("m.pkl", "compressed", "sklearn"),
        ("m.pickle", "skops", "sklearn"),
        ("m.skops", "skops", "sklearn"),
        ("m.onnx", "onnx", "onnx"),
        ("m.json", "xgboost json", "xgboost"),
        ("m.ubj", "xgboost ubj", "xgboost"),
        ("m.txt", "lightgbm", "lightgbm"),
        ("M.LGB", "lightgbm", "lightgbm"),
    ],
)
def test_runtime_from_extension_and_content(
    artefacts: dict[str, bytes], file_name: str, artefact: str, runtime: str
) -> None:
    assert detect_runtime(Path(file_name), artefacts[artefact][:HEAD_BYTES]) == runtime


@pytest.mark.parametrize(
    ("file_name", "artefact", "message"),
    [
        (
            "m.onnx",
            "joblib",
            "m.onnx is not an ONNX model as the onnx runtime expects: its "
            "content is a Python pickle (name it .joblib or .pkl). It was not loaded.",
        ),
        ("m.onnx", "xgboost json", "its content is an XGBoost JSON model (name it .json)"),
        ("m.json", "joblib", "booster.save_model('model.json')"),
        ("m.json", "xgboost ubj", "its content is an XGBoost UBJSON model (name it .ubj)"),
        ("m.txt", "onnx", "not a LightGBM text model"),
        ("m.joblib", "lightgbm", "its content is a LightGBM text model (name it .txt or .lgb)"),
        ("m.skops", "joblib", "m.skops is not a zip archive"),
        ("m.pt", "joblib", "torch.jit.save"),
        ("m.onnx", "", "its content is in no format fastinfer reads"),
    ],
)
def test_content_must_agree_with_the_extension(
    artefacts: dict[str, bytes], file_name: str, artefact: str, message: str
) -> None:
    head = artefacts[artefact][:HEAD_BYTES] if artefact else b"not a model"
    with pytest.raises(ArtefactFormatError) as caught:
        detect_runtime(Path(file_name), head)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_unknown_extensions_and_a_given_runtime(artefacts: dict[str, bytes]) -> None:
    with pytest.raises(ArtefactFormatError, match=r"extension '\.bin' \(known extensions: "):
        detect_runtime(Path("m.bin"), artefacts["joblib"])
    with pytest.raises(ArtefactFormatError, match="extension '\\(none\\)'"):
        detect_runtime(Path("model"), artefacts["joblib"])
    assert detect_runtime(Path("m.bin"), artefacts["joblib"], "sklearn") == "sklearn"
    assert detect_runtime(Path("m.bin"), artefacts["xgboost ubj"], "xgboost") == "xgboost"
    with pytest.raises(ArtefactFormatError, match="not an ONNX model"):
        detect_runtime(Path("m.bin"), artefacts["joblib"], "onnx")
    assert detect_runtime(Path("m.py"), b"", "python") == "python"


def test_a_pickle_named_onnx_is_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    data = pickle.dumps(Marker(marker))
    with pytest.raises(ArtefactFormatError, match="is not an ONNX model"):
        detect_runtime(tmp_path / "evil.onnx", data[:HEAD_BYTES])
    assert not marker.exists()
    pickle.loads(data)  # the proof works: unpickling it does create the file
    assert marker.exists()


def test_the_kind_comes_from_the_artefact(artefacts: dict[str, bytes]) -> None:
    assert open_as("sklearn", artefacts["joblib"])[0] == "classifier"
    assert open_as("sklearn", joblib_bytes(LinearRegression().fit(X, Y)))[0] == "regressor"
    assert open_as("onnx", softmax_classifier())[0] == "classifier"
    assert open_as("onnx", tabular_regressor())[0] == "regressor"  # [N,1]: one column
    assert open_as("xgboost", artefacts["xgboost json"])[0] == "classifier"
    booster = train_xgb({"objective": "reg:squarederror"}, frame(), regression_target(frame()))
    assert open_as("xgboost", saved(booster, "json"))[0] == "regressor"
    assert open_as("lightgbm", artefacts["lightgbm"])[0] == "regressor"


def test_unstarted_runtimes_are_returned_unstarted() -> None:
    """The registry opens a bare artefact before forking: no session may cross the fork."""
    kind, runtime = open_as("onnx", tabular_regressor(), start=False)
    assert kind == "regressor"
    assert isinstance(runtime, OnnxRuntime) and runtime._session is None
    runtime.start()
    assert runtime.derived_inputs() is not None


def test_a_kind_that_does_not_fit_says_why(artefacts: dict[str, bytes]) -> None:
    with pytest.raises(KindError) as caught:
        open_as("lightgbm", artefacts["lightgbm"], "classifier")
    assert caught.value.problems == [
        "as a classifier: output kind is classifier but the booster's objective is huber, whose "
        "predictions are not class probabilities (objectives served as classifiers: binary, "
        "multiclass, multiclassova)"
    ]
    with pytest.raises(KindError, match="the lightgbm runtime cannot load it as a classifier"):
        open_as("lightgbm", artefacts["lightgbm"].replace(b"objective=huber", b"objective=x"))
