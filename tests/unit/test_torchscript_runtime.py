"""The torchscript runtime: tiny modules scripted or traced here, served and called directly.

torch is optional (the `torch` extra, or `pip install torch`); without it these tests skip.
"""

from __future__ import annotations

import io
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fastinfer.model.spec import InputField, OutputSpec
from fastinfer.runtimes import Runtime, create_runtime
from tests.conftest import serve_in_process, sha256_of, wait_ready, write_config

torch = pytest.importorskip("torch")

LABELS = {"0": "setosa", "1": "versicolor", "2": "virginica"}
FEATURES = [{"name": f"f{i}", "type": "number"} for i in range(4)]


class TupleOutputs(torch.nn.Module):
    def forward(
        self, image: torch.Tensor, mask: torch.Tensor, scale: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return image * scale.reshape(-1, 1, 1), mask + 1


class DictOutputs(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"doubled": x * 2, "total": x.sum(dim=1)}


class RowSums(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(dim=1)


def linear(weight: list[list[float]], bias: list[float]) -> Any:
    layer = torch.nn.Linear(len(weight[0]), len(weight))
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
        layer.bias.copy_(torch.tensor(bias))
    return layer


def iris_like(*, softmax: bool = True) -> Any:
    """4 features → 3 classes: a fixed linear layer, with or without its softmax."""
    layer = linear(
        [[1.0, 0.0, 0.5, 0.0], [0.0, 1.0, 0.0, -0.5], [-1.0, 0.0, 1.0, 1.0]], [0.0, 0.5, -0.5]
    )
    layers = [layer, torch.nn.Softmax(dim=1)] if softmax else [layer]
    return torch.jit.script(torch.nn.Sequential(*layers).eval())


def archive(module: Any) -> bytes:
    buffer = io.BytesIO()
    torch.jit.save(module, buffer)
    return buffer.getvalue()


def model_dir(directory: Path, name: str, module: Any, *, pin: bool = True, **config: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    artefact = directory / "model.pt"
    artefact.write_bytes(archive(module))
    body: dict[str, Any] = {
        "name": name,
        "version": "1",
        "runtime": "torchscript",
        "artefact": {"path": "model.pt", **({"sha256": sha256_of(artefact)} if pin else {})},
        **config,
    }
    return write_config(directory, body)


def started(module: Any, output: OutputSpec, fields: list[InputField], **options: Any) -> Runtime:
    runtime = create_runtime("torchscript", output, options)
    runtime.load(archive(module))
    runtime.start()
    runtime.bind_schema(fields)
    return runtime


def reason_of(directory: Path) -> str:
    with serve_in_process(directory) as client:
        for _ in range(1500):
            models = client.get("/readyz").json()["details"]["models"]
            if models[directory.name] not in ("loading", "starting"):
                return str(models[directory.name])
            time.sleep(0.02)
    raise AssertionError("still loading")


# --- served end to end ----------------------------------------------------------------------


def test_classifier_serves_the_modules_probabilities(tmp_path: Path) -> None:
    module = iris_like()
    directory = model_dir(
        tmp_path / "iris",
        "iris",
        module,
        inputs=FEATURES,
        output={"kind": "classifier", "labels": LABELS},
        example={"f0": 5.1, "f1": 3.5, "f2": 1.4, "f3": 0.2},
    )
    features = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    rows = [{f"f{i}": float(v) for i, v in enumerate(row)} for row in features]
    with serve_in_process(directory) as client:
        wait_ready(client)
        meta = client.get("/v1/models/iris").json()
        response = client.post("/v1/models/iris/predict", json={"inputs": rows})
        schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert meta["runtime"] == "torchscript" and meta["self_test"] == "passed"
    assert response.status_code == 200, response.text
    with torch.inference_mode():
        expected = module(torch.from_numpy(features)).numpy()
    for prediction, probs in zip(response.json()["predictions"], expected, strict=True):
        assert list(prediction["probabilities"]) == list(LABELS.values())
        np.testing.assert_allclose(list(prediction["probabilities"].values()), probs, atol=2e-6)
        assert prediction["label"] == LABELS[str(int(np.argmax(probs)))]
    item = schemas["IrisPredictResponse"]["properties"]["predictions"]["items"]
    assert item["properties"]["label"]["enum"] == list(LABELS.values())


def test_tensor_fields_and_tuple_outputs_served(tmp_path: Path) -> None:
    directory = model_dir(
        tmp_path / "pair",
        "pair",
        torch.jit.script(TupleOutputs()),
        inputs=[
            {"name": "image", "type": "number", "shape": [2, 2]},
            {"name": "mask", "type": "integer", "shape": [3]},
            {"name": "scale", "type": "number"},
        ],
        output={"kind": "tensor"},
        example={"image": [[1, 2], [3, 4]], "mask": [0, 1, 0], "scale": 1},
    )
    rows = [
        {"image": [[1, 2], [3, 4]], "mask": [0, 1, 0], "scale": 2},
        {"image": [[0.5, 0], [0, -1]], "mask": [5, 5, 5], "scale": -1},
    ]
    with serve_in_process(directory) as client:
        wait_ready(client)
        response = client.post("/v1/models/pair/predict", json={"inputs": rows})
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == [
        {"output_0": [[2.0, 4.0], [6.0, 8.0]], "output_1": [1, 2, 1]},
        {"output_0": [[-0.5, -0.0], [-0.0, 1.0]], "output_1": [6, 6, 6]},
    ]


def test_config_without_inputs_fails_with_a_clear_reason(tmp_path: Path) -> None:
    directory = model_dir(tmp_path / "bare", "bare", iris_like(), output={"kind": "classifier"})
    reason = reason_of(directory)
    assert "carries no feature names" in reason and "declare `inputs`" in reason


def test_unpinned_archive_is_refused_without_trust(tmp_path: Path) -> None:
    directory = model_dir(tmp_path / "loose", "loose", iris_like(), pin=False, inputs=FEATURES)
    assert "no sha256 pin" in reason_of(directory)


# --- the runtime on its own -----------------------------------------------------------------


def test_logits_option_applies_softmax() -> None:
    module = iris_like(softmax=False)
    fields = [InputField(name=f"f{i}", type="number") for i in range(4)]
    runtime = started(module, OutputSpec(kind="classifier"), fields, logits=True)
    rows = [{"f0": 1.0, "f1": -2.0, "f2": 0.5, "f3": 3.0}, {"f0": 0, "f1": 0, "f2": 0, "f3": 0}]
    predictions = runtime.predict(rows, [f.name for f in fields])
    with torch.inference_mode():
        logits = module(torch.tensor([list(r.values()) for r in rows], dtype=torch.float32))
        expected = torch.softmax(logits, dim=1).numpy()
    for prediction, probs in zip(predictions, expected, strict=True):
        np.testing.assert_allclose(list(prediction["probabilities"].values()), probs, atol=2e-6)
        assert prediction["label"] == str(int(np.argmax(probs)))
    assert runtime.output_labels() == ["0", "1", "2"]


def test_regressor_from_a_traced_module_with_mixed_scalar_types() -> None:
    layer = linear([[2.0, -1.0, 10.0]], [0.5])
    traced = torch.jit.trace(layer.eval(), torch.zeros(1, 3))
    fields = [
        InputField(name="a", type="number"),
        InputField(name="n", type="integer"),
        InputField(name="flag", type="boolean"),
    ]
    runtime = started(traced, OutputSpec(kind="regressor"), fields)
    rows = [{"a": 1.5, "n": 2, "flag": True}, {"a": -1.0, "n": 0, "flag": False}]
    predictions = runtime.predict(rows, ["a", "n", "flag"])
    with torch.inference_mode():
        expected = layer(torch.tensor([[1.5, 2, 1], [-1.0, 0, 0]])).reshape(-1).tolist()
    assert [p["value"] for p in predictions] == pytest.approx(expected)
    assert expected == pytest.approx([11.5, -1.5])

    sums = started(torch.jit.script(RowSums()), OutputSpec(kind="regressor"), fields[:1])
    assert sums.predict([{"a": 3.0}, {"a": -2.0}], ["a"]) == [{"value": 3.0}, {"value": -2.0}]


def test_dict_and_single_tensor_outputs_are_split_per_row() -> None:
    fields = [InputField(name="x", type="number", shape=[3])]
    rows = [{"x": [1.0, 2.0, 3.0]}, {"x": np.array([0.5, 0.0, -1.0])}]  # lists or fast-path arrays
    named = started(torch.jit.script(DictOutputs()), OutputSpec(kind="tensor"), fields)
    assert named.predict(rows, ["x"]) == [
        {"doubled": [2.0, 4.0, 6.0], "total": 6.0},
        {"doubled": [1.0, 0.0, -2.0], "total": -0.5},
    ]
    single = started(torch.jit.script(RowSums()), OutputSpec(kind="tensor"), fields)
    assert single.predict(rows, ["x"]) == [{"output": 6.0}, {"output": -0.5}]


def test_missing_numbers_become_nan() -> None:
    fields = [
        InputField(name="a", type="number", nullable=True),
        InputField(name="b", type="number"),
    ]
    runtime = started(torch.jit.script(RowSums()), OutputSpec(kind="tensor"), fields)
    (prediction,) = runtime.predict([{"a": None, "b": 1.0}], ["a", "b"])
    assert math.isnan(prediction["output"])


def test_declared_labels_are_known_before_the_first_run() -> None:
    fields = [InputField(name=f"f{i}", type="number") for i in range(4)]
    runtime = started(iris_like(), OutputSpec(kind="classifier", labels=LABELS), fields)
    assert runtime.output_labels() == list(LABELS.values())
    stray = started(iris_like(), OutputSpec(kind="classifier", labels={"7": "x"}), fields)
    with pytest.raises(ValueError, match=r"key\(s\) 7 are not class indices"):
        stray.predict([{"f0": 0, "f1": 0, "f2": 0, "f3": 0}], [f.name for f in fields])


def test_options_threads_and_device() -> None:
    before = torch.get_num_threads()
    try:
        fields = [InputField(name="a", type="number")]
        started(torch.jit.script(RowSums()), OutputSpec(kind="regressor"), fields, threads=2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match="threads must be a whole number >= 1"):
        create_runtime("torchscript", OutputSpec(), {"threads": 0})
    with pytest.raises(ValueError, match="device must be a torch device"):
        create_runtime("torchscript", OutputSpec(), {"device": "gpu-please"})
    with pytest.raises(ValueError, match="logits applies only to output kind classifier"):
        create_runtime("torchscript", OutputSpec(kind="regressor"), {"logits": True})
    with pytest.raises(ValueError, match="unknown torchscript runtime option"):
        create_runtime("torchscript", OutputSpec(), {"num_threads": 2})
    if not torch.cuda.is_available():
        runtime = create_runtime("torchscript", OutputSpec(), {"device": "cuda"})
        runtime.load(archive(iris_like()))
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            runtime.start()


def test_bad_artefacts_schemas_and_outputs_are_explained() -> None:
    runtime = create_runtime("torchscript", OutputSpec(), {})
    assert runtime.needs_trust(b"anything")
    with pytest.raises(ValueError, match="not a TorchScript archive"):
        runtime.load(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="artefact is empty"):
        runtime.load(b"")
    with pytest.raises(TypeError, match=r"declare a numeric type for: name \(string\)"):
        started(iris_like(), OutputSpec(), [InputField(name="name", type="string")])

    scalar = [InputField(name="a", type="number")]
    sums = torch.jit.script(RowSums())
    with pytest.raises(TypeError, match=r"one \[N, C\] tensor.*shape \[1\]"):
        started(sums, OutputSpec(kind="classifier"), scalar).predict([{"a": 1.0}], ["a"])
    wide = [InputField(name=f"f{i}", type="number") for i in range(4)]
    row = {"f0": 1.0, "f1": 1.0, "f2": 1.0, "f3": 1.0}
    with pytest.raises(ValueError, match=r"\[N\] or \[N, 1\]; got shape \[1, 3\]"):
        started(iris_like(), OutputSpec(kind="regressor"), wide).predict([row], list(row))
    mixed = [
        InputField(name="v", type="number", shape=[2]),
        InputField(name="n", type="integer", nullable=True),
    ]
    with pytest.raises(ValueError, match=r"field 'n' holds a null that a int64 tensor cannot"):
        started(sums, OutputSpec(kind="tensor"), mixed).predict([{"v": [1, 2], "n": None}], ["v"])
