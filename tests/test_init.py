"""`fastinfer init`: model directories scaffolded from an artefact (and a sample), then served."""

from __future__ import annotations

import json
import math
import pickle
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
import skops.io
import typer
from onnx import TensorProto, helper, numpy_helper
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from typer.testing import CliRunner, Result

from fastinfer.cli.init import init_command
from fastinfer.model.spec import InputField, ModelConfig, load_model_directory
from fastinfer.monitoring.reference import (
    bin_counts,
    category_key,
    read_reference,
    reference_statistics,
    write_reference,
)
from fastinfer.scaffold.build import ScaffoldError, model_name_for, runtime_for
from fastinfer.scaffold.fields import infer_field
from tests.conftest import serve_in_process, sha256_of, wait_ready
from tests.unit.test_onnx_runtime import make_model, tabular_regressor

runner = CliRunner()
COLOURS = ["red", "green", "blue", "purple"]


def _app() -> typer.Typer:
    """The command as `fastinfer init` will run it, without depending on the CLI's wiring."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command("init")(init_command)

    @app.callback()
    def _root() -> None:
        """Test app."""

    return app


APP = _app()


def init(*args: str | Path) -> Result:
    return runner.invoke(APP, ["init", *map(str, args)])


class Exploding:
    """A 'classifier' that loads fine and fails on every prediction."""

    classes_ = np.array(["a", "b"])

    def predict(self, features: Any) -> Any:
        raise ValueError("boom: this model cannot predict")

    def predict_proba(self, features: Any) -> Any:
        raise ValueError("boom: this model cannot predict")


# --- the scikit-learn pipeline ------------------------------------------------------------------


def shop_frame(n: int = 60) -> pd.DataFrame:
    """Shop visits: colour (string), size (float, a few missing), count (int), member (bool)."""
    rng = np.random.default_rng(7)
    size = rng.normal(10, 3, size=n).round(2)
    size[[0, 17, 40]] = np.nan  # the first row is incomplete: the example is the second
    colour = np.array([COLOURS[i % 4] for i in range(n)])
    frame = pd.DataFrame(
        {
            "colour": colour,
            "size": size,
            "count": rng.integers(0, 6, size=n),
            "member": rng.random(n) < 0.5,
        }
    )
    frame["bought"] = np.where((colour == "red") | (np.nan_to_num(size) > 11), "yes", "no")
    return frame


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, pd.DataFrame]:
    """(artefact, sample CSV, sample frame): the sample holds no purple row, the model knows it."""
    folder = tmp_path_factory.mktemp("shop")
    frame = shop_frame()
    features = frame.drop(columns="bought")
    numbers = Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())])
    prepare = ColumnTransformer(
        [
            ("colour", OneHotEncoder(), ["colour"]),
            ("numbers", numbers, ["size", "count"]),
            ("flags", "passthrough", ["member"]),
        ]
    )
    model = Pipeline([("prepare", prepare), ("classify", LogisticRegression())])
    model.fit(features, frame["bought"])
    artefact = folder / "Shop Model.joblib"
    joblib.dump(model, artefact)
    sample = frame[frame["colour"] != "purple"].reset_index(drop=True)
    sample_path = folder / "visits.csv"
    sample.to_csv(sample_path, index=False)
    return artefact, sample_path, sample


@pytest.fixture(scope="module")
def shop_dir(
    shop: tuple[Path, Path, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    artefact, sample, _ = shop
    target = tmp_path_factory.mktemp("out") / "shop"
    result = init(artefact, "--sample", sample, "--target", "bought", "--output", target)
    assert result.exit_code == 0, result.output
    assert "fastinfer serve" in result.stdout and str(target) in result.stdout
    return target


def test_init_writes_a_pinned_typed_config(
    shop: tuple[Path, Path, pd.DataFrame], shop_dir: Path
) -> None:
    artefact, _, sample = shop
    assert sorted(p.name for p in shop_dir.iterdir()) == [
        "model.joblib",
        "model.yaml",
        "reference.json",
    ]
    assert not list(shop_dir.parent.glob(".*"))  # no staging folder left behind
    config = load_model_directory(shop_dir).config
    assert (config.name, config.version, config.runtime) == ("shop-model", "1", "sklearn")
    assert config.artefact is not None
    assert config.artefact.sha256 == sha256_of(artefact) == sha256_of(shop_dir / "model.joblib")
    fields = {f.name: f for f in config.inputs or []}
    assert list(fields) == ["colour", "size", "count", "member"]  # "bought" is the target
    # The encoder's categories, purple included, though the sample has no purple row.
    assert fields["colour"].type == "string"
    assert fields["colour"].allowed == ["blue", "green", "purple", "red"]
    assert (fields["size"].type, fields["size"].nullable) == ("number", True)
    assert (fields["count"].type, fields["count"].nullable) == ("integer", False)
    assert (fields["member"].type, fields["member"].nullable) == ("boolean", False)
    # The first row has no size: the example is the second, as plain JSON values.
    second = sample.iloc[1]
    assert config.example == {
        "colour": second["colour"],
        "size": float(second["size"]),
        "count": int(second["count"]),
        "member": bool(second["member"]),
    }
    assert config.output.kind == "classifier" and config.output.labels is None
    assert config.expected_example_output in ("yes", "no")


def test_the_scaffolded_directory_serves(shop_dir: Path) -> None:
    config = load_model_directory(shop_dir).config
    with serve_in_process(shop_dir) as client:
        wait_ready(client)
        meta = client.get("/v1/models/shop-model").json()
        assert meta["self_test"] == "passed"
        good = {"colour": "purple", "size": None, "count": 3, "member": True}
        response = client.post(
            "/v1/models/shop-model/predict", json={"inputs": [config.example, good]}
        )
        assert response.status_code == 200, response.text
        first, second = response.json()["predictions"]
        assert first["label"] == config.expected_example_output
        assert second["label"] in ("yes", "no")
        assert set(second["probabilities"]) == {"yes", "no"}

        bad = {**good, "colour": "orange"}
        response = client.post("/v1/models/shop-model/predict", json={"inputs": [good, bad]})
        assert response.status_code == 422, response.text
        (problem,) = response.json()["details"]
        assert (problem["row"], problem["field"]) == (1, "colour")
        assert "purple" in problem["problem"]

        row = client.get("/openapi.json").json()["components"]["schemas"]["ShopModelRow"]
    properties = row["properties"]
    assert properties["colour"]["enum"] == ["blue", "green", "purple", "red"]
    assert properties["count"]["type"] == "integer"
    assert properties["member"]["type"] == "boolean"
    assert {"type": "number"} in properties["size"]["anyOf"]
    assert {"type": "null"} in properties["size"]["anyOf"]
    assert set(row["required"]) == {"colour", "count", "member"}


def test_reference_json_has_the_documented_shape(
    shop: tuple[Path, Path, pd.DataFrame], shop_dir: Path
) -> None:
    _, _, sample = shop
    text = (shop_dir / "reference.json").read_text()

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not standard JSON")

    json.loads(text, parse_constant=refuse)
    stats = read_reference(shop_dir / "reference.json")
    assert stats["format"] == 1 and stats["rows"] == len(sample)
    datetime.fromisoformat(stats["created_at"])
    features = stats["features"]
    assert set(features) == {"colour", "size", "count", "member"}
    for name in ("size", "count"):
        numeric = features[name]
        assert numeric["kind"] == "numeric"
        assert numeric["bins"][0] == -math.inf and numeric["bins"][-1] == math.inf
        assert numeric["bins"] == sorted(set(numeric["bins"]))
        assert 2 <= len(numeric["bins"]) <= 11
        assert len(numeric["counts"]) == len(numeric["bins"]) - 1
        assert sum(numeric["counts"]) + numeric["missing"] == len(sample)
        assert min(numeric["counts"]) > 0  # edges are sample values: no empty reference bin
        column = sample[name].dropna()
        assert numeric["min"] == column.min() and numeric["max"] == column.max()
        assert numeric["mean"] == pytest.approx(column.mean())
    assert features["size"]["missing"] == int(sample["size"].isna().sum()) > 0
    colour = features["colour"]
    assert colour["kind"] == "categorical" and colour["missing"] == 0
    assert colour["counts"] == sample["colour"].value_counts().sort_index().to_dict()
    assert set(features["member"]["counts"]) <= {"true", "false"}
    prediction = stats["prediction"]
    assert prediction["kind"] == "categorical" and set(prediction["counts"]) <= {"yes", "no"}
    assert sum(prediction["counts"].values()) + prediction["missing"] == len(sample)
    assert prediction["missing"] == 0


def test_init_refuses_to_overwrite_without_force(
    shop: tuple[Path, Path, pd.DataFrame], tmp_path: Path
) -> None:
    artefact, sample, _ = shop
    target = tmp_path / "shop"
    assert init(artefact, "--sample", sample, "--target", "bought", "-o", target).exit_code == 0
    config_before = (target / "model.yaml").read_text()
    (target / "notes.txt").write_text("mine")

    result = init(artefact, "-o", target)
    assert result.exit_code == 2
    assert "already exists" in result.stderr and "--force" in result.stderr
    assert (target / "model.yaml").read_text() == config_before

    result = init(artefact, "-o", target, "--force", "--version", "2")
    assert result.exit_code == 0, result.output
    config = load_model_directory(target).config
    assert config.version == "2" and config.example is None  # no sample this time
    assert not (target / "reference.json").exists()  # the old sample's statistics are gone
    assert (target / "notes.txt").read_text() == "mine"  # other files are left alone


def test_default_place_is_models_name_version(
    shop: tuple[Path, Path, pd.DataFrame], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    artefact, sample, _ = shop
    monkeypatch.chdir(tmp_path)
    result = init(artefact, "--sample", sample, "--name", "shop", "--version", "2.1")
    assert result.exit_code == 0, result.output
    directory = load_model_directory(tmp_path / "models" / "shop" / "2.1")
    assert (directory.config.name, directory.config.version) == ("shop", "2.1")
    # The artefact names its inputs: without --target, the label column is just not used.
    assert [f.name for f in directory.config.inputs or []] == ["colour", "size", "count", "member"]
    assert "sample columns the model does not use: bought" in result.stdout


def test_a_column_the_model_needs_must_be_in_the_sample(
    shop: tuple[Path, Path, pd.DataFrame], tmp_path: Path
) -> None:
    artefact, _, sample = shop
    partial = tmp_path / "partial.csv"
    sample.drop(columns=["size"]).to_csv(partial, index=False)
    result = init(artefact, "--sample", partial, "-o", tmp_path / "out" / "shop")
    assert result.exit_code == 2
    assert "the model needs column(s) the sample lacks: size" in result.stderr
    assert not (tmp_path / "out").exists()


def test_the_sample_must_agree_with_the_model(tmp_path: Path) -> None:
    onnx_file = tmp_path / "tabular.onnx"
    onnx_file.write_bytes(tabular_regressor())
    sample = tmp_path / "rows.csv"
    sample.write_text("age,count,colour\nold,1,red\nyoung,2,blue\n")
    result = init(onnx_file, "--sample", sample, "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert "column 'age': the model takes number values but the sample holds string" in (
        result.stderr
    )


def test_unknown_extension_asks_for_runtime(
    shop: tuple[Path, Path, pd.DataFrame], tmp_path: Path
) -> None:
    artefact, _, _ = shop
    renamed = tmp_path / "model.bin"
    renamed.write_bytes(artefact.read_bytes())
    result = init(renamed, "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert "cannot tell the runtime from the extension '.bin'" in result.stderr
    assert "--runtime" in result.stderr
    result = init(renamed, "--runtime", "sklearn", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert load_model_directory(tmp_path / "out").config.artefact.path == "model.bin"  # type: ignore[union-attr]


def test_bad_options_are_refused_before_any_work(
    shop: tuple[Path, Path, pd.DataFrame], tmp_path: Path
) -> None:
    artefact, _, _ = shop
    for args, message in [
        (["--name", "Bad Name"], "--name 'Bad Name' is not valid"),
        (["--version", "1 0"], "--version '1 0' is not valid"),
        (["--kind", "ranker"], "--kind must be one of classifier, regressor, tensor"),
        (["--runtime", "python"], "the python runtime serves code"),
        (["--runtime", "keras"], "unknown runtime 'keras'"),
        (["--sample", str(tmp_path / "nope.csv")], "no such sample file"),
    ]:
        result = init(artefact, "-o", tmp_path / "out", *args)
        assert result.exit_code == 2, args
        assert message in result.stderr, (args, result.stderr)
    assert not (tmp_path / "out").exists()


def test_kind_regressor_on_a_classifier_is_refused(tiny_dir: Path, tmp_path: Path) -> None:
    """It was accepted silently: the model served its labels as "values", without the
    probabilities (issue 16)."""
    result = init(tiny_dir / "model.joblib", "-o", tmp_path / "out", "--kind", "regressor")
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (
        "error: model.joblib is a classifier (labels: high, low): as a regressor it would serve "
        "its predicted labels as numbers and drop the probabilities. Leave --kind out (it is "
        "detected), or pass --kind tensor for the raw outputs"
    )
    assert not (tmp_path / "out").exists()
    tensor = init(tiny_dir / "model.joblib", "-o", tmp_path / "raw", "--kind", "tensor")
    assert tensor.exit_code == 0, tensor.output  # raw outputs: a deliberate, allowed choice


def test_a_model_that_fails_to_load_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    artefact = tmp_path / "exploding.pkl"
    joblib.dump(Exploding(), artefact)
    sample = tmp_path / "rows.csv"
    sample.write_text("x,y\n1.0,2\n2.0,3\n")
    monkeypatch.chdir(tmp_path)
    result = init(artefact, "--sample", sample)
    assert result.exit_code == 2
    assert "does not load" in result.stderr and "boom" in result.stderr
    assert not (tmp_path / "models").exists()  # nor the parents it made


# --- other kinds and runtimes -------------------------------------------------------------------


def test_regressor_fit_on_an_array_takes_the_sample_columns_in_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    features = rng.normal(size=(40, 2))
    target = features @ np.array([2.0, -1.0]) + 0.5
    artefact = tmp_path / "price.pkl"
    joblib.dump(LinearRegression().fit(features, target), artefact)
    sample = tmp_path / "rows.csv"
    pd.DataFrame({"area": features[:, 0], "age": features[:, 1], "price": target}).to_csv(
        sample, index=False
    )
    result = init(artefact, "--sample", sample, "--target", "price", "-o", tmp_path / "price")
    assert result.exit_code == 0, result.output
    assert "taken in order" in result.stdout
    config = load_model_directory(tmp_path / "price").config
    assert [(f.name, f.type) for f in config.inputs or []] == [
        ("area", "number"),
        ("age", "number"),
    ]
    assert config.output.kind == "regressor"
    assert config.example is not None and config.expected_example_output is None
    stats = read_reference(tmp_path / "price" / "reference.json")
    assert stats["prediction"]["kind"] == "numeric"
    assert sum(stats["prediction"]["counts"]) == 40
    assert stats["prediction"]["mean"] == pytest.approx(target.mean())


def test_onnx_without_a_sample_takes_the_inputs_from_the_signature(tmp_path: Path) -> None:
    artefact = tmp_path / "tabular.onnx"
    artefact.write_bytes(tabular_regressor())
    result = init(artefact, "-o", tmp_path / "tabular")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "tabular" / "reference.json").exists()
    config = load_model_directory(tmp_path / "tabular").config
    assert (config.runtime, config.output.kind) == ("onnx", "regressor")  # [N,1]: not a class
    fields = {f.name: f for f in config.inputs or []}
    assert [(f.name, f.type) for f in fields.values()] == [
        ("age", "number"),
        ("count", "integer"),
        ("colour", "string"),
    ]
    assert fields["count"].minimum is not None  # the int64 range, kept from the graph
    assert config.example is None
    with serve_in_process(tmp_path / "tabular") as client:
        wait_ready(client)
        response = client.post(
            "/v1/models/tabular/predict",
            json={"inputs": [{"age": 1.5, "count": 2, "colour": "red"}]},
        )
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == [{"value": 15.0}]


def test_onnx_probability_output_is_a_classifier_with_a_tensor_field(tmp_path: Path) -> None:
    weight = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    graph = make_model(
        [
            helper.make_node("MatMul", ["x", "w"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(weight, "w")],
    )
    artefact = tmp_path / "digits.onnx"
    artefact.write_bytes(graph)
    result = init(artefact, "-o", tmp_path / "digits")
    assert result.exit_code == 0, result.output
    config = load_model_directory(tmp_path / "digits").config
    assert config.output.kind == "classifier"
    assert [(f.name, f.type, f.shape) for f in config.inputs or []] == [("x", "number", [4])]
    result = init(artefact, "-o", tmp_path / "raw", "--kind", "tensor")
    assert result.exit_code == 0, result.output
    assert load_model_directory(tmp_path / "raw").config.output.kind == "tensor"


def test_parquet_without_pyarrow_says_what_to_install(
    shop: tuple[Path, Path, pd.DataFrame], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if not installed: import fails
    artefact, _, _ = shop
    sample = tmp_path / "rows.parquet"
    sample.write_bytes(b"PAR1")
    result = init(artefact, "--sample", sample, "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert "pyarrow" in result.stderr


def test_parquet_sample(shop: tuple[Path, Path, pd.DataFrame], tmp_path: Path) -> None:
    artefact, _, sample = shop
    path = tmp_path / "rows.parquet"
    sample.to_parquet(path)
    result = init(artefact, "--sample", path, "--target", "bought", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output


# --- pieces -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file_name", "runtime"),
    [
        ("m.joblib", "sklearn"),
        ("m.PKL", "sklearn"),
        ("m.skops", "sklearn"),
        ("m.onnx", "onnx"),
        ("m.json", "xgboost"),
        ("m.ubj", "xgboost"),
        ("m.txt", "lightgbm"),
        ("m.lgb", "lightgbm"),
        ("m.pt", "torchscript"),
        ("m.torchscript", "torchscript"),
    ],
)
def test_runtime_from_extension(file_name: str, runtime: str) -> None:
    assert runtime_for(Path(file_name)) == runtime


def test_model_names_follow_the_config_pattern() -> None:
    assert model_name_for(Path("My Model (v2).joblib")) == "my-model-v2"
    assert model_name_for(Path("__titanic.v3.pkl")) == "titanic.v3"
    assert model_name_for(Path("x" * 100 + ".onnx")) == "x" * 63
    ModelConfig(name=model_name_for(Path("Ünïcode Größe.pt")), version="1", runtime="python")
    with pytest.raises(ScaffoldError, match="--name"):
        model_name_for(Path("___.joblib"))


def test_infer_field_from_sample_columns() -> None:
    frame = pd.DataFrame(
        {
            "colour": ["red", "blue", "red", None],
            "id": ["a", "b", "c", "d"],  # every value different: not a category
            "whole": [1.0, None, 3.0, 4.0],  # integer-valued floats with a gap stay numbers
            "count": [1, 2, 3, 4],
            "flag": [True, False, True, True],
            "mixed": [1, "a", 2.5, None],
        }
    )
    colour = infer_field("colour", frame["colour"])
    assert (colour.type, colour.nullable, colour.allowed) == ("string", True, ["blue", "red"])
    assert infer_field("id", frame["id"]).allowed is None
    whole = infer_field("whole", frame["whole"])
    assert (whole.type, whole.nullable) == ("number", True)
    assert infer_field("count", frame["count"]).type == "integer"
    assert infer_field("flag", frame["flag"]).type == "boolean"
    assert infer_field("mixed", frame["mixed"]).type == "any"
    many = pd.Series([f"v{i % 60}" for i in range(200)])
    assert infer_field("many", many).allowed is None  # more than 50 distinct values


def test_reference_statistics_are_deterministic_and_binned_as_documented(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "x": [float(i) for i in range(100)],
            "same": [5.0] * 100,
            "empty": [None] * 100,
            "level": ["b", "a"] * 50,
            "flag": [True, False, False, True] * 25,
        }
    )
    fields = [
        InputField(name="x", type="number"),
        InputField(name="same", type="integer"),
        InputField(name="empty", type="number", nullable=True),
        InputField(name="level", type="string", allowed=["a", "b"]),
        InputField(name="flag", type="boolean"),
        InputField(name="vector", type="number", shape=[3]),  # tensors are left out
    ]
    when = datetime(2025, 1, 31, 12, tzinfo=UTC)
    predictions = [1.5 * i if i % 10 else None for i in range(100)]
    stats = reference_statistics(frame, fields, predictions, created_at=when)
    assert stats == reference_statistics(frame, fields, predictions, created_at=when)
    assert stats["created_at"] == "2025-01-31T12:00:00+00:00"
    assert set(stats["features"]) == {"x", "same", "empty", "level", "flag"}
    x = stats["features"]["x"]
    assert len(x["bins"]) == 11 and x["counts"] == [10] * 10  # deciles
    assert stats["features"]["same"]["bins"] == [-math.inf, math.inf]  # only the maximum
    assert stats["features"]["same"]["counts"] == [100]
    empty = stats["features"]["empty"]
    assert (empty["counts"], empty["missing"], empty["mean"]) == ([0], 100, None)
    assert stats["features"]["level"]["counts"] == {"a": 50, "b": 50}
    assert stats["features"]["flag"]["counts"] == {"false": 50, "true": 50}
    assert stats["prediction"]["kind"] == "numeric" and stats["prediction"]["missing"] == 10

    path = tmp_path / "reference.json"
    write_reference(path, stats)
    assert read_reference(path) == stats
    path.write_text('{"format": 99}')
    with pytest.raises(ValueError, match="format 1"):
        read_reference(path)


def test_bin_counts_and_category_keys_for_drift_checks() -> None:
    edges = [-math.inf, 1.0, 2.0, math.inf]
    # (-inf, 1], (1, 2], (2, inf): an edge value falls in the bin below it; NaN is skipped.
    assert bin_counts(edges, [0.5, 1.0, 1.5, 2.0, 2.5, 1e9, -1e9, math.nan]) == [3, 2, 2]
    assert [category_key(v) for v in (True, np.bool_(False), 3, 3.0, 2.5, "x", None)] == [
        "true",
        "false",
        "3",
        "3",
        "2.5",
        "x",
        None,
    ]
    assert category_key(math.nan) is None and category_key(np.int64(7)) == "7"


def test_identifier_like_text_fields_are_left_out_of_the_reference() -> None:
    frame = pd.DataFrame(
        {
            "name": [f"passenger {i}" for i in range(400)],  # every value new
            "city": [f"city {i % 60}" for i in range(400)],  # many, but each seen often
            "code": [f"c{i}" for i in range(400)],  # unique, but the schema lists them
        }
    )
    fields = [
        InputField(name="name", type="string"),
        InputField(name="city", type="string"),
        InputField(name="code", type="string", allowed=[f"c{i}" for i in range(400)]),
    ]
    stats = reference_statistics(frame, fields)
    assert set(stats["features"]) == {"city", "code"}


# --- fidelity (issue 13): what each artefact format needs from init -----------------------------


def double(values: Any) -> Any:
    """A custom function: skops does not trust it unless told to."""
    return values * 2


def test_a_skops_pipeline_with_one_hot_encoding_and_imputing_scaffolds(
    shop: tuple[Path, Path, pd.DataFrame], tmp_path: Path
) -> None:
    """Its SimpleImputer holds a numpy.dtype, which skops reports as untrusted but rebuilds
    without calling anything: init (and serve) trust it without an option."""
    artefact, sample, _ = shop
    skops_file = tmp_path / "shop.skops"
    skops.io.dump(joblib.load(artefact), skops_file)
    assert skops.io.get_untrusted_types(file=skops_file) == ["numpy.dtype"]
    result = init(skops_file, "--sample", sample, "--target", "bought", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    config = load_model_directory(tmp_path / "out").config
    assert config.runtime_options == {} and config.artefact is not None
    assert config.artefact.path == "model.skops"
    assert config.expected_example_output in ("yes", "no")
    assert "self-test: passed" in " ".join(result.stdout.split())


def test_trust_type_lets_init_scaffold_a_skops_file_with_custom_types(tmp_path: Path) -> None:
    frame = shop_frame()
    model = Pipeline(
        [
            ("prepare", ColumnTransformer([("x", FunctionTransformer(double), ["size", "count"])])),
            ("impute", SimpleImputer()),
            ("classify", LogisticRegression()),
        ]
    ).fit(frame[["size", "count"]], frame["bought"])
    skops_file = tmp_path / "custom.skops"
    skops.io.dump(model, skops_file)
    sample = tmp_path / "rows.csv"
    frame[["size", "count", "bought"]].to_csv(sample, index=False)
    out = tmp_path / "out"
    result = init(skops_file, "--sample", sample, "--target", "bought", "-o", out)
    assert result.exit_code == 2
    assert f"pass --trust-type {__name__}.double" in " ".join(result.stderr.split())
    assert not out.exists() and not list(tmp_path.glob(".*"))
    result = init(
        skops_file,
        "-s",
        sample,
        "--target",
        "bought",
        "-o",
        out,
        "--trust-type",
        f"{__name__}.double",
    )
    assert result.exit_code == 0, result.output
    config = load_model_directory(out).config
    assert config.runtime_options == {"trusted_types": [f"{__name__}.double"]}
    assert config.example is not None and config.expected_example_output in ("yes", "no")
    result = init(skops_file, "-o", tmp_path / "onnx", "--runtime", "onnx", "--trust-type", "x.Y")
    assert result.exit_code == 2
    assert "--trust-type applies to skops files" in result.stderr


def test_an_skl2onnx_model_takes_its_features_from_the_sample_columns(tmp_path: Path) -> None:
    """One float input [N,3] with no names: the sample's columns name the features, so init
    writes an example, runs the self-test and keeps statistics of every feature."""
    from tests.unit.test_registry_bare import skl2onnx_classifier, skl2onnx_probabilities

    artefact = tmp_path / "clf.onnx"
    artefact.write_bytes(skl2onnx_classifier())
    rng = np.random.default_rng(3)
    features = rng.normal(size=(40, 3)).round(3)
    frame = pd.DataFrame(features, columns=["sepal length", "width", "depth"])
    frame["label"] = skl2onnx_probabilities(features).argmax(axis=1)
    sample = tmp_path / "train.csv"
    frame.to_csv(sample, index=False)
    out = tmp_path / "out"
    result = init(artefact, "--sample", sample, "--target", "label", "-o", out)
    assert result.exit_code == 0, result.output
    config = load_model_directory(out).config
    assert config.runtime_options == {
        "input_columns": {"float_input": ["sepal length", "width", "depth"]}
    }
    assert [(f.name, f.type) for f in config.inputs or []] == [
        ("sepal length", "number"),
        ("width", "number"),
        ("depth", "number"),
    ]
    names = ["sepal length", "width", "depth"]
    assert config.example == dict(zip(names, features[0].tolist(), strict=True))
    assert config.expected_example_output == str(frame["label"][0])
    reference = read_reference(out / "reference.json")
    assert set(reference["features"]) == {"sepal length", "width", "depth"}
    assert reference["prediction"] is not None
    with serve_in_process(out) as client:
        wait_ready(client)
        assert client.get("/v1/models/clf").json()["self_test"] == "passed"
        rows = frame.drop(columns="label").head(5).to_dict("records")
        response = client.post("/v1/models/clf/predict", json={"inputs": rows})
    assert response.status_code == 200, response.text
    got = [[p["probabilities"][k] for k in ("0", "1")] for p in response.json()["predictions"]]
    np.testing.assert_allclose(got, skl2onnx_probabilities(features[:5]), atol=1e-5)

    result = init(artefact, "--sample", sample, "-o", tmp_path / "no-target")
    assert result.exit_code == 0, result.output
    assert "takes 3 features but the sample has 4 columns" in " ".join(result.stdout.split())


def test_lightgbm_columns_with_spaces_scaffold_from_their_own_csv(tmp_path: Path) -> None:
    """LightGBM names the feature of column "past visits" past_visits: init maps it back, and
    the model serves under the CSV's names."""
    import lightgbm as lgb

    rng = np.random.default_rng(5)
    frame = pd.DataFrame(
        {"past visits": rng.integers(0, 9, 200), "age in years": rng.normal(40, 9, 200).round(1)}
    )
    frame["churned"] = ((frame["past visits"] < 3) ^ (frame["age in years"] > 45)).astype(int)
    features = frame.drop(columns="churned")
    params = {
        "objective": "binary",
        "num_threads": 1,
        "seed": 0,
        "verbose": -1,
        "deterministic": True,
    }
    booster = lgb.train(params, lgb.Dataset(features, frame["churned"]), num_boost_round=5)
    assert booster.feature_name() == ["past_visits", "age_in_years"]
    artefact = tmp_path / "churn.txt"
    booster.save_model(artefact)
    sample = tmp_path / "train.csv"
    frame.to_csv(sample, index=False)
    out = tmp_path / "out"
    result = init(artefact, "--sample", sample, "--target", "churned", "-o", out)
    assert result.exit_code == 0, result.output
    config = load_model_directory(out).config
    assert [f.name for f in config.inputs or []] == ["past visits", "age in years"]
    assert config.example is not None and config.expected_example_output in ("0", "1")
    with serve_in_process(out) as client:
        wait_ready(client)
        rows = features.head(6).to_dict("records")
        response = client.post("/v1/models/churn/predict", json={"inputs": rows})
    assert response.status_code == 200, response.text
    got = [p["probabilities"]["1"] for p in response.json()["predictions"]]
    np.testing.assert_allclose(got, booster.predict(features.head(6)), rtol=1e-6)


def test_init_refuses_a_pickle_named_onnx_without_loading_it(tmp_path: Path) -> None:
    from tests.unit.test_registry_bare import Marker

    marker = tmp_path / "ran"
    evil = tmp_path / "evil.onnx"
    evil.write_bytes(pickle.dumps(Marker(marker)))
    result = init(evil, "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert "evil.onnx is not an ONNX model" in " ".join(result.stderr.split())
    assert not marker.exists() and not (tmp_path / "out").exists()
