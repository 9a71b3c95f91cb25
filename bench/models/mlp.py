"""The benchmark's ONNX MLP, built from a seed with the `onnx` helper API.

A generated model keeps the benchmark free of downloads and training: the same seed gives the
same bytes (and so the same sha256 pin) on every machine. The graph is float32 [N,256] → Gemm →
Relu → Gemm → Relu → Gemm → Softmax, with He-scaled weights so the probabilities are spread out
rather than one-hot, which keeps the response sizes realistic.

    python bench/models/mlp.py OUT_DIR [--seed 0] [--hidden 1024]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import yaml
from onnx import TensorProto, helper, numpy_helper

OPSET = 17  # ai.onnx opset 17 with IR version 8: well inside what onnxruntime 1.31 runs
IR_VERSION = 8
INPUT_NAME = "x"
OUTPUT_NAME = "probabilities"
ARTEFACT = "model.onnx"


def build_mlp_model(
    *, seed: int = 0, hidden: int = 1024, features: int = 256, classes: int = 10
) -> onnx.ModelProto:
    """The MLP as an ONNX model, its weights drawn from `numpy.random.default_rng(seed)`."""
    rng = np.random.default_rng(seed)
    sizes = [features, hidden, hidden, classes]
    initializers: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []
    current = INPUT_NAME
    for layer, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        last = layer == len(sizes) - 2
        # He init for the ReLU layers; 1/sqrt(fan_in) for the logits keeps them of order 1.
        scale = np.sqrt((1.0 if last else 2.0) / fan_in)
        weight = (rng.standard_normal((fan_in, fan_out)) * scale).astype(np.float32)
        bias = (rng.standard_normal(fan_out) * 0.01).astype(np.float32)
        initializers += [
            numpy_helper.from_array(weight, f"w{layer}"),
            numpy_helper.from_array(bias, f"b{layer}"),
        ]
        out = "logits" if last else f"h{layer}"
        nodes.append(helper.make_node("Gemm", [current, f"w{layer}", f"b{layer}"], [out]))
        if not last:
            nodes.append(helper.make_node("Relu", [out], [f"a{layer}"]))
            out = f"a{layer}"
        current = out
    nodes.append(helper.make_node("Softmax", [current], [OUTPUT_NAME], axis=-1))
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", features])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", classes])],
        initializer=initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="fastinfer-bench",
        producer_version="1",
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def example_row(*, seed: int = 0, features: int = 256) -> list[float]:
    """A deterministic input row: standard normal values rounded to 4 decimals for the YAML."""
    rng = np.random.default_rng([seed, 1])  # its own stream, independent of the weights
    return [round(float(v), 4) for v in rng.standard_normal(features)]


def _forward(model: onnx.ModelProto, row: list[float]) -> npt.NDArray[np.float64]:
    """The MLP in NumPy (float64), to pin the example's label without running onnxruntime."""
    weights = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    layers = len(weights) // 2
    activation = np.asarray([row], dtype=np.float32).astype(np.float64)
    for layer in range(layers):
        activation = activation @ weights[f"w{layer}"] + weights[f"b{layer}"]
        if layer < layers - 1:
            activation = np.maximum(activation, 0.0)
    exp = np.exp(activation - activation.max())
    result: npt.NDArray[np.float64] = (exp / exp.sum())[0]
    return result


def build_mlp_model_dir(
    out_dir: Path, *, seed: int = 0, hidden: int = 1024, features: int = 256, classes: int = 10
) -> Path:
    """Write `model.onnx` and `model.yaml` into `out_dir` (created if needed); return it.

    The config leaves `inputs` out, so fastinfer derives `x: number[256]` from the graph.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = build_mlp_model(seed=seed, hidden=hidden, features=features, classes=classes)
    data = model.SerializeToString()
    (out_dir / ARTEFACT).write_bytes(data)
    row = example_row(seed=seed, features=features)
    config: dict[str, Any] = {
        "name": "mlp",
        "version": "1.0.0",
        "description": (
            f"A generated {features}-{hidden}-{hidden}-{classes} MLP (seed {seed}) for the "
            "benchmark; its labels mean nothing."
        ),
        "runtime": "onnx",
        "runtime_options": {"intra_op_threads": 1, "inter_op_threads": 1},
        "artefact": {"path": ARTEFACT, "sha256": hashlib.sha256(data).hexdigest()},
        "example": {INPUT_NAME: row},
        "output": {
            "kind": "classifier",
            "labels": {str(i): f"digit_{i}" for i in range(classes)},
        },
    }
    probabilities = _forward(model, row)
    runner_up, best = np.sort(probabilities)[-2:]
    if best - runner_up > 1e-3:  # a clear winner survives onnxruntime's float32 rounding
        config["expected_example_output"] = f"digit_{int(np.argmax(probabilities))}"
    text = yaml.safe_dump(config, sort_keys=False, default_flow_style=None, width=100)
    (out_dir / "model.yaml").write_text(text, encoding="utf-8")
    return out_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the benchmark's ONNX MLP model directory.")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--features", type=int, default=256)
    parser.add_argument("--classes", type=int, default=10)
    args = parser.parse_args(argv)
    out = build_mlp_model_dir(
        args.out_dir,
        seed=args.seed,
        hidden=args.hidden,
        features=args.features,
        classes=args.classes,
    )
    print(out)


if __name__ == "__main__":
    main()
