"""The onnx runtime: graphs built here with the onnx helper API, served and called directly."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient
from onnx import TensorProto, helper, numpy_helper

from bench.models.mlp import build_mlp_model_dir
from fastinfer.model.schema import InvalidRowsError, RowSchema
from fastinfer.model.spec import InputField, OutputSpec, load_model_directory
from fastinfer.runtimes import create_runtime
from fastinfer.runtimes.onnx import OnnxRuntime
from tests.conftest import serve_in_process, sha256_of, wait_ready, write_config

OPSETS = [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]


def make_model(
    nodes: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    initializers: list[onnx.TensorProto] | None = None,
) -> bytes:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=initializers or [])
    model = helper.make_model(graph, opset_imports=OPSETS, ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    data: bytes = model.SerializeToString()
    return data


def model_dir(
    directory: Path, name: str, graph: bytes, *, output: dict[str, Any], **config: Any
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.onnx").write_bytes(graph)
    return write_config(
        directory,
        {
            "name": name,
            "version": "1",
            "runtime": "onnx",
            "artefact": {"path": "model.onnx", "sha256": sha256_of(directory / "model.onnx")},
            "output": output,
            **config,
        },
    )


def started(graph: bytes, output: OutputSpec, **options: Any) -> OnnxRuntime:
    runtime = create_runtime("onnx", output, options)
    assert isinstance(runtime, OnnxRuntime)
    runtime.load(graph)
    runtime.start()
    return runtime


def wait_settled(client: TestClient, timeout: float = 30.0) -> dict[str, Any]:
    """The /readyz body once no model is still loading."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get("/readyz")
        body: dict[str, Any] = response.json()
        if response.status_code == 200 or "loading" not in body["details"]["models"].values():
            return body
        time.sleep(0.02)
    raise AssertionError("models still loading")


def softmax_classifier() -> bytes:
    """x float [N,8] → (label int64 [N], probs float [N,3]): a linear layer and a softmax."""
    rng = np.random.default_rng(1)
    weight = rng.standard_normal((8, 3)).astype(np.float32)
    return make_model(
        [
            helper.make_node("MatMul", ["x", "w"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
            helper.make_node("ArgMax", ["probs"], ["label"], axis=1, keepdims=0),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
            helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 3]),
        ],
        [numpy_helper.from_array(weight, "w")],
    )


def tabular_regressor() -> bytes:
    """age float, count int64, colour string, each [N,1] → value = 2·age + count + (10 if red)."""
    return make_model(
        [
            helper.make_node("Cast", ["count"], ["count_f"], to=TensorProto.FLOAT),
            helper.make_node(
                "LabelEncoder",
                ["colour"],
                ["colour_f"],
                domain="ai.onnx.ml",
                keys_strings=["red", "blue"],
                values_floats=[10.0, 0.0],
                default_float=0.0,
            ),
            helper.make_node("Mul", ["age", "two"], ["age2"]),
            helper.make_node("Add", ["age2", "count_f"], ["partial"]),
            helper.make_node("Add", ["partial", "colour_f"], ["value"]),
        ],
        [
            helper.make_tensor_value_info("age", TensorProto.FLOAT, [None, 1]),
            helper.make_tensor_value_info("count", TensorProto.INT64, [None, 1]),
            helper.make_tensor_value_info("colour", TensorProto.STRING, [None, 1]),
        ],
        [helper.make_tensor_value_info("value", TensorProto.FLOAT, [None, 1])],
        [numpy_helper.from_array(np.array([2.0], dtype=np.float32), "two")],
    )


def tensor_graph() -> bytes:
    """x float [N,2,2] → doubled [N,2,2] and total [N]."""
    return make_model(
        [
            helper.make_node("Add", ["x", "x"], ["doubled"]),
            helper.make_node("ReduceSum", ["x", "axes"], ["total"], keepdims=0),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 2])],
        [
            helper.make_tensor_value_info("doubled", TensorProto.FLOAT, ["N", 2, 2]),
            helper.make_tensor_value_info("total", TensorProto.FLOAT, ["N"]),
        ],
        [numpy_helper.from_array(np.array([1, 2], dtype=np.int64), "axes")],
    )


# --- the benchmark MLP: a tensor-input classifier with a derived schema ------------------------


@pytest.fixture(scope="module")
def mlp_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_mlp_model_dir(tmp_path_factory.mktemp("mlp") / "mlp", hidden=32)


@pytest.fixture(scope="module")
def mlp_client(mlp_dir: Path) -> Iterator[TestClient]:
    with serve_in_process(mlp_dir) as client:
        wait_ready(client)
        yield client


def test_mlp_builder_is_deterministic(tmp_path: Path) -> None:
    first = build_mlp_model_dir(tmp_path / "a", hidden=16)
    second = build_mlp_model_dir(tmp_path / "b", hidden=16)
    for name in ("model.onnx", "model.yaml"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
    other_seed = build_mlp_model_dir(tmp_path / "c", hidden=16, seed=1)
    assert (other_seed / "model.onnx").read_bytes() != (first / "model.onnx").read_bytes()
    config = load_model_directory(first).config
    assert (config.name, config.version, config.runtime) == ("mlp", "1.0.0", "onnx")
    assert config.inputs is None  # derived from the graph
    assert config.example is not None and len(config.example["x"]) == 256
    assert config.artefact.sha256 == sha256_of(first / "model.onnx")


def test_mlp_loads_self_tests_and_derives_its_schema(mlp_client: TestClient) -> None:
    meta = mlp_client.get("/v1/models/mlp").json()
    assert meta["ready"] and meta["runtime"] == "onnx"
    assert meta["self_test"] == "passed"
    assert meta["inputs"] == [{"name": "x", "type": "number", "nullable": False, "shape": [256]}]
    x = meta["input_schema"]["properties"]["x"]
    assert x["type"] == "array" and x["minItems"] == x["maxItems"] == 256
    assert x["items"]["type"] == "number"
    assert meta["output"]["labels"] == [f"digit_{i}" for i in range(10)]


def test_mlp_predictions_match_onnxruntime(mlp_client: TestClient, mlp_dir: Path) -> None:
    features = np.random.default_rng(7).standard_normal((5, 256)).astype(np.float32)
    response = mlp_client.post(
        "/v1/models/mlp/predict", json={"inputs": [{"x": row.tolist()} for row in features]}
    )
    assert response.status_code == 200, response.text
    session = ort.InferenceSession(str(mlp_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    (expected,) = session.run(None, {"x": features})
    for prediction, probs in zip(response.json()["predictions"], expected, strict=True):
        got = [prediction["probabilities"][f"digit_{i}"] for i in range(10)]
        np.testing.assert_allclose(got, probs, atol=1e-6)
        assert prediction["label"] == f"digit_{int(np.argmax(probs))}"


def test_mlp_row_of_wrong_length_is_422_naming_the_field(mlp_client: TestClient) -> None:
    response = mlp_client.post("/v1/models/mlp/predict", json={"inputs": [{"x": [0.5] * 255}]})
    assert response.status_code == 422, response.text
    (problem,) = response.json()["details"]
    assert (problem["row"], problem["field"]) == (0, "x")
    assert "256" in problem["problem"]


def test_mlp_string_inside_the_tensor_is_422_naming_the_element(mlp_client: TestClient) -> None:
    values: list[Any] = [0.5] * 256
    values[3] = "big"
    response = mlp_client.post(
        "/v1/models/mlp/predict", json={"inputs": [{"x": [0.0] * 256}, {"x": values}]}
    )
    assert response.status_code == 422, response.text
    (problem,) = response.json()["details"]
    assert (problem["row"], problem["field"]) == (1, "x[3]")
    assert problem["problem"] == "must be a valid number"


def test_openapi_publishes_the_derived_row_schema(mlp_client: TestClient) -> None:
    schemas = mlp_client.get("/openapi.json").json()["components"]["schemas"]
    x = schemas["MlpRow"]["properties"]["x"]
    assert x["type"] == "array" and x["minItems"] == 256 and x["items"]["type"] == "number"
    prediction = schemas["MlpPredictResponse"]["properties"]["predictions"]["items"]
    assert prediction["properties"]["label"]["enum"] == [f"digit_{i}" for i in range(10)]


# --- other graphs, served -------------------------------------------------------------------


def test_tensor_classifier_picks_the_probability_output_and_maps_labels(tmp_path: Path) -> None:
    labels = {"0": "cat", "1": "dog", "2": "bird"}
    graph = softmax_classifier()
    directory = model_dir(
        tmp_path / "lin",
        "lin",
        graph,
        output={"kind": "classifier", "labels": labels},
        example={"x": [0.0] * 8},
    )
    features = np.random.default_rng(3).standard_normal((4, 8)).astype(np.float32)
    with serve_in_process(directory) as client:
        wait_ready(client)
        response = client.post(
            "/v1/models/lin/predict", json={"inputs": [{"x": row.tolist()} for row in features]}
        )
    assert response.status_code == 200, response.text
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    _, expected = session.run(None, {"x": features})
    for prediction, probs in zip(response.json()["predictions"], expected, strict=True):
        assert list(prediction["probabilities"]) == ["cat", "dog", "bird"]
        np.testing.assert_allclose(list(prediction["probabilities"].values()), probs, atol=1e-6)
        assert prediction["label"] == labels[str(int(np.argmax(probs)))]


def test_tabular_graph_derives_typed_columns_and_predicts(tmp_path: Path) -> None:
    directory = model_dir(
        tmp_path / "tab",
        "tab",
        tabular_regressor(),
        output={"kind": "regressor"},
        example={"age": 1.5, "count": 2, "colour": "red"},
        expected_example_output=15.0,
    )
    rows = [
        {"age": 1.5, "count": 2, "colour": "red"},
        {"age": -4.0, "count": 7, "colour": "blue"},
        {"age": 0.25, "count": 0, "colour": "green"},
    ]
    with serve_in_process(directory) as client:
        wait_ready(client)
        meta = client.get("/v1/models/tab").json()
        response = client.post("/v1/models/tab/predict", json={"inputs": rows})
        wrong = client.post(
            "/v1/models/tab/predict", json={"inputs": [{"age": 1, "count": 1.5, "colour": 3}]}
        )
    assert meta["self_test"] == "passed"
    properties = meta["input_schema"]["properties"]
    assert properties["age"]["type"] == "number"
    assert properties["count"]["type"] == "integer"
    assert -(2**63) < properties["count"]["minimum"] < -(2**62)  # int64's range
    assert properties["colour"]["type"] == "string"
    assert [f["name"] for f in meta["inputs"]] == ["age", "count", "colour"]
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == [{"value": 15.0}, {"value": -1.0}, {"value": 0.5}]
    assert wrong.status_code == 422
    assert {d["field"] for d in wrong.json()["details"]} == {"count", "colour"}


def test_tensor_kind_returns_every_output_per_row(tmp_path: Path) -> None:
    directory = model_dir(
        tmp_path / "raw",
        "raw",
        tensor_graph(),
        output={"kind": "tensor"},
        example={"x": [[1, 2], [3, 4]]},
    )
    with serve_in_process(directory) as client:
        wait_ready(client)
        response = client.post(
            "/v1/models/raw/predict",
            json={"inputs": [{"x": [[1.0, 2.0], [3.0, 4.0]]}, {"x": [[0.5, 0], [0, -1]]}]},
        )
        schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == [
        {"doubled": [[2.0, 4.0], [6.0, 8.0]], "total": 10.0},
        {"doubled": [[1.0, 0.0], [0.0, -2.0]], "total": -0.5},
    ]
    item = schemas["RawPredictResponse"]["properties"]["predictions"]["items"]
    assert item["required"] == ["doubled", "total"]
    assert item["properties"]["total"] == {"type": "number"}
    doubled = item["properties"]["doubled"]
    assert doubled["maxItems"] == 2 and doubled["items"]["maxItems"] == 2
    assert doubled["items"]["items"] == {"type": "number"}


def test_unknown_runtime_option_fails_the_model_naming_the_key(tmp_path: Path) -> None:
    directory = model_dir(
        tmp_path / "bad",
        "bad",
        softmax_classifier(),
        output={"kind": "classifier"},
        runtime_options={"intra_op_threads": 1, "intra_op_thread": 2},
    )
    with serve_in_process(directory) as client:
        body = wait_settled(client)
        status = client.get("/readyz").status_code
    assert status == 503
    reason = body["details"]["models"]["bad"]
    assert "intra_op_thread" in reason and "unknown" in reason


# --- the runtime on its own -----------------------------------------------------------------


def test_zipmap_probabilities_are_read_as_a_classifier() -> None:
    graph = make_model(
        [
            helper.make_node("ArgMax", ["x"], ["label"], axis=1, keepdims=0),
            helper.make_node(
                "ZipMap", ["x"], ["probability"], domain="ai.onnx.ml", classlabels_int64s=[0, 1]
            ),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
            helper.make_value_info(
                "probability",
                helper.make_sequence_type_proto(
                    helper.make_map_type_proto(
                        TensorProto.INT64, helper.make_tensor_type_proto(TensorProto.FLOAT, [])
                    )
                ),
            ),
        ],
    )
    runtime = started(graph, OutputSpec(kind="classifier", labels={"0": "no", "1": "yes"}))
    assert runtime.output_labels() is None  # ZipMap keys are known once the graph has run
    predictions = runtime.predict([{"x": [0.25, 0.75]}, {"x": [0.9, 0.1]}], ["x"])
    f32 = [float(np.float32(v)) for v in (0.9, 0.1)]  # the graph's float32 values, unrounded
    assert predictions == [
        {"label": "yes", "probabilities": {"no": 0.25, "yes": 0.75}},
        {"label": "no", "probabilities": {"no": f32[0], "yes": f32[1]}},
    ]
    assert runtime.output_labels() == ["no", "yes"]


def test_one_dimensional_inputs_and_regressor_output() -> None:
    graph = make_model(
        [helper.make_node("Sub", ["a", "b"], ["diff"])],
        [
            helper.make_tensor_value_info("a", TensorProto.DOUBLE, ["N"]),
            helper.make_tensor_value_info("b", TensorProto.DOUBLE, ["N"]),
        ],
        [helper.make_tensor_value_info("diff", TensorProto.DOUBLE, ["N"])],
    )
    runtime = started(graph, OutputSpec(kind="regressor"))
    assert runtime.derived_inputs() == [
        InputField(name="a", type="number"),
        InputField(name="b", type="number"),
    ]
    rows = [{"a": 3.0, "b": 1.0}, {"a": 0.5, "b": 2.0}]
    assert runtime.predict(rows, ["a", "b"]) == [{"value": 2.0}, {"value": -1.5}]


def test_dynamic_feature_dimension_cannot_be_derived_but_can_be_declared() -> None:
    graph = make_model(
        [helper.make_node("ReduceSum", ["x", "axes"], ["total"], keepdims=0)],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "F"])],
        [helper.make_tensor_value_info("total", TensorProto.FLOAT, ["N"])],
        [numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")],
    )
    runtime = started(graph, OutputSpec(kind="regressor"))
    with pytest.raises(TypeError, match=r"'x' has shape \[N,F\].*declare `inputs`"):
        runtime.derived_inputs()
    assert runtime.predict([{"x": [1.0, 2.0, 3.0]}], ["x"]) == [{"value": 6.0}]


def test_fixed_batch_of_one_runs_row_by_row() -> None:
    graph = make_model(
        [helper.make_node("Softmax", ["x"], ["probs"], axis=-1)],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 2])],
    )
    runtime = started(graph, OutputSpec(kind="classifier"))
    predictions = runtime.predict([{"x": [0.0, 5.0]}, {"x": [5.0, 0.0]}, {"x": [1, 1]}], ["x"])
    assert [p["label"] for p in predictions] == ["1", "0", "0"]
    assert predictions[2]["probabilities"] == {"0": 0.5, "1": 0.5}


def test_session_options_are_applied_and_checked() -> None:
    graph = softmax_classifier()
    runtime = started(
        graph,
        OutputSpec(kind="classifier"),
        intra_op_threads=2,
        inter_op_threads=2,
        graph_optimization_level="basic",
        execution_mode="parallel",
        probabilities_output="probs",
    )
    options = runtime.session.get_session_options()
    assert options.intra_op_num_threads == 2 and options.inter_op_num_threads == 2
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert options.execution_mode == ort.ExecutionMode.ORT_PARALLEL
    with pytest.raises(ValueError, match="intra_op_threads"):
        OnnxRuntime(OutputSpec(), {"intra_op_threads": "two"})
    with pytest.raises(ValueError, match="parallel needs inter_op_threads"):
        OnnxRuntime(OutputSpec(), {"execution_mode": "parallel"})
    with pytest.raises(ValueError, match="graph_optimization_level"):
        OnnxRuntime(OutputSpec(), {"graph_optimization_level": "max"})
    with pytest.raises(ValueError, match="not an output"):
        started(graph, OutputSpec(kind="classifier"), probabilities_output="scores")
    with pytest.raises(ValueError, match=r"key\(s\) 3 are not class indices"):
        started(graph, OutputSpec(kind="classifier", labels={"3": "x"}))
    with pytest.raises(TypeError, match="no output is a float"):
        started(tensor_graph(), OutputSpec(kind="classifier"))


def test_input_columns_stack_scalar_fields_into_one_tensor_input() -> None:
    """Runtime option input_columns: x [N,8] fed from eight named scalar fields, in order."""
    graph = softmax_classifier()
    names = [f"f{i}" for i in range(8)]
    runtime = started(graph, OutputSpec(kind="classifier"), input_columns={"x": names})
    fields = runtime.derived_inputs()
    assert fields == [InputField(name=n, type="number") for n in names]
    rows = [dict(zip(names, map(float, range(i, i + 8)), strict=True)) for i in range(3)]
    plain = started(graph, OutputSpec(kind="classifier"))
    stacked = [{"x": [row[n] for n in names]} for row in rows]
    assert runtime.predict(rows, names) == plain.predict(stacked, ["x"])
    with pytest.raises(ValueError, match=r"graph input\(s\) f7 have no field"):
        runtime.predict(rows, names[:7])
    for option, message in [
        ({"x": "f0"}, "must map a graph input to the names of the fields"),
        ({"x": []}, "must map a graph input"),
        ({"y": names}, r"names y, not graph input\(s\) \(inputs: x\)"),
        ({"x": names[:7]}, r"has shape \[N,8\]; 7 columns stack into a \[N,7\] input"),
        ({"x": ["a"] * 8}, r"field\(s\) a feed the graph twice"),
    ]:
        with pytest.raises(ValueError, match=message):
            started(graph, OutputSpec(kind="classifier"), input_columns=option)


def test_input_dtypes_are_the_graph_inputs_element_types() -> None:
    """What the schema bounds to float32's range: every field that feeds a float graph input,
    by its own name or as one of the input_columns stacked into it."""
    float32, int64 = np.dtype(np.float32), np.dtype(np.int64)
    tabular = started(tabular_regressor(), OutputSpec(kind="regressor"))
    fields = tabular.derived_inputs() or []
    assert {k: v for k, v in tabular.input_dtypes(fields).items() if v != np.object_} == {
        "age": float32,
        "count": int64,
    }
    names = [f"f{i}" for i in range(8)]
    stacked = started(
        softmax_classifier(), OutputSpec(kind="classifier"), input_columns={"x": names}
    )
    columns = stacked.derived_inputs() or []
    assert stacked.input_dtypes(columns) == dict.fromkeys(names, float32)
    schema = RowSchema(
        "s",
        columns,
        allow_extra=False,
        max_rows=2,
        example=None,
        dtypes=stacked.input_dtypes(columns),
    )
    with pytest.raises(InvalidRowsError, match="row 0, field 'f3': is beyond float32's range"):
        schema.validate_rows([{**dict.fromkeys(names, 0.0), "f3": 3.5e38}])
