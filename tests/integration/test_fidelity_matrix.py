"""The fidelity matrix: a served answer is the model's own answer, whatever the path.

For every runtime (scikit-learn joblib and skops, ONNX, XGBoost, LightGBM, the python runtime
with records and with a DataFrame; TorchScript where torch is installed) and both examples, a
few hundred rows with missing and edge values go through every path a client can take — v1 one
row per request sent concurrently (so the engine batches other clients' rows together), v1 many
rows per request, v2 JSON, v2 binary (tritonclient) and `fastinfer predict` — against one real
server process. Each answer must equal what the model computes in this process with its own
API (`predict_proba` / `predict`, the booster, the ONNX session, the class itself): labels
exactly, probabilities bitwise, except where docs/model-format.md states a tolerance.
"""

from __future__ import annotations

import itertools
import json
import math
import sys
import textwrap
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx
import joblib
import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import skops.io
import tritonclient.http as triton
from onnx import TensorProto, helper, numpy_helper
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import SVC
from typer.testing import CliRunner

from fastinfer.cli import app as cli_app
from tests.conftest import CAR, CAR_VALUES, TITANIC, sha256_of, write_config
from tests.integration.server import RunningServer, running_server

pytestmark = pytest.mark.slow
ROWS = 240
Prediction = dict[str, Any]
# docs/model-format.md "Exactness": NumPy/BLAS reductions round differently with the batch's size
# (in-process too), so scikit-learn rows agree within this across batch compositions.
SKLEARN_TOLERANCE = 1e-15


@dataclass
class Case:
    """One served model, the rows sent to it and the model's own answers to them."""

    name: str
    directory: Path
    rows: list[dict[str, Any]]
    expected: list[Prediction]
    v2_types: dict[str, str]  # field → the v2 datatype a client sends it as
    tolerance: float = 0.0  # absolute, on probabilities; 0: bitwise
    binary_rows: list[int] | None = None  # rows a binary tensor can carry (None: all)
    notes: list[str] = field(default_factory=list)


# -- the models ------------------------------------------------------------------------------


def _classifier(classes: list[Any], proba: np.ndarray, labels: list[Any]) -> list[Prediction]:
    names = [str(c.item() if isinstance(c, np.generic) else c) for c in classes]
    return [
        {"label": str(label.item() if isinstance(label, np.generic) else label),
         "probabilities": dict(zip(names, map(float, row), strict=True))}
        for label, row in zip(labels, proba, strict=True)
    ]  # fmt: skip


def _tabular(seed: int, n: int) -> pd.DataFrame:
    """Mixed columns with missing values and edge values inside the declared ranges."""
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 3, n)
    a[rng.random(n) < 0.15] = np.nan
    a[:4] = [-1000.0, 1000.0, 1e-300, -0.0]  # the ends of the range, a tiny and a signed zero
    b = rng.integers(0, 50, n)
    b[:2] = [0, 49]
    c = rng.choice(["red", "green", "blue"], n)
    return pd.DataFrame({"a": a, "b": b, "c": c})


def _target(frame: pd.DataFrame) -> np.ndarray:
    score = np.nan_to_num(frame["a"].to_numpy()) + frame["b"].to_numpy() / 10 - 2
    score += np.where(frame["c"] == "red", 1.5, 0.0)
    return (score > 0).astype(int)


TABULAR_INPUTS = [
    {"name": "a", "type": "number", "nullable": True, "minimum": -1000, "maximum": 1000},
    {"name": "b", "type": "integer", "minimum": 0, "maximum": 49},
    {"name": "c", "type": "string", "allowed": ["red", "green", "blue"]},
]
TABULAR_V2 = {"a": "FP64", "b": "INT64", "c": "BYTES"}


def _rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON rows as a client sends them: NaN → null, numpy scalars → Python."""
    rows = json.loads(frame.to_json(orient="records", double_precision=15))
    for row, a in zip(rows, frame["a"], strict=True):  # to_json rounds: keep every bit
        row["a"] = None if math.isnan(a) else float(a)
    return rows


def _directory(root: Path, name: str, artefact: str, config: dict[str, Any]) -> Path:
    directory = root / name
    return write_config(
        directory,
        {
            "name": name,
            "version": "1",
            "artefact": {"path": artefact, "sha256": sha256_of(directory / artefact)},
            **config,
        },
    )


def sklearn_pipeline(root: Path) -> Case:
    train, test = _tabular(0, 600), _tabular(1, ROWS)
    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    model = Pipeline(
        [
            ("prepare", ColumnTransformer(
                [("num", numeric, ["a", "b"]),
                 ("cat", OneHotEncoder(handle_unknown="ignore"), ["c"])])),
            ("classify", LogisticRegression(random_state=0)),
        ]
    ).fit(train, _target(train))  # fmt: skip
    (root / "pipeline").mkdir()
    joblib.dump(model, root / "pipeline" / "model.joblib")
    directory = _directory(
        root,
        "pipeline",
        "model.joblib",
        {"runtime": "sklearn", "inputs": TABULAR_INPUTS, "output": {"kind": "classifier"}},
    )
    expected = _classifier(model.classes_, model.predict_proba(test), model.predict(test))
    return Case("pipeline", directory, _rows(test), expected, TABULAR_V2, SKLEARN_TOLERANCE)


def svc_disagreeing(root: Path) -> Case:
    """SVC(probability=True): its predict() and argmax(predict_proba) disagree on some rows."""
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (400, 2))
    y = (x[:, 0] + 0.5 * rng.normal(0, 1, 400) > 0).astype(int)
    model = SVC(probability=True, random_state=0).fit(pd.DataFrame(x, columns=["p", "q"]), y)
    test = pd.DataFrame(rng.normal(0, 1, (ROWS, 2)), columns=["p", "q"])
    proba, labels = model.predict_proba(test), model.predict(test)
    assert (proba.argmax(axis=1) != labels).any(), "the case needs rows where the two disagree"
    (root / "svc").mkdir()
    joblib.dump(model, root / "svc" / "model.joblib")
    directory = _directory(
        root,
        "svc",
        "model.joblib",
        {
            "runtime": "sklearn",
            "inputs": [{"name": "p", "type": "number"}, {"name": "q", "type": "number"}],
            "output": {"kind": "classifier"},
        },
    )
    rows = [{"p": float(p), "q": float(q)} for p, q in test.to_numpy()]
    return Case("svc", directory, rows, _classifier(model.classes_, proba, labels),
                {"p": "FP64", "q": "FP64"}, SKLEARN_TOLERANCE)  # fmt: skip


def skops_model(root: Path) -> Case:
    rng = np.random.default_rng(4)
    x = rng.normal(0, 2, (500, 3))
    y = np.digitize(x[:, 0] + x[:, 1], [-1.0, 1.0])  # three classes
    columns = ["u", "v", "w"]
    model = make_pipeline(StandardScaler(), LogisticRegression(random_state=0))
    model.fit(pd.DataFrame(x, columns=columns), y)
    test = pd.DataFrame(rng.normal(0, 2, (ROWS, 3)), columns=columns)
    (root / "skops3").mkdir()
    skops.io.dump(model, root / "skops3" / "model.skops")
    directory = _directory(
        root,
        "skops3",
        "model.skops",
        {
            "runtime": "sklearn",
            "inputs": [{"name": c, "type": "number"} for c in columns],
            "output": {"kind": "classifier", "labels": {"0": "low", "1": "mid", "2": "high"}},
        },
    )
    names = {0: "low", 1: "mid", 2: "high"}
    expected = _classifier(
        [names[c] for c in model.classes_],
        model.predict_proba(test),
        [names[int(c)] for c in model.predict(test)],
    )
    rows = [dict(zip(columns, map(float, r), strict=True)) for r in test.to_numpy()]
    return Case(
        "skops3", directory, rows, expected, dict.fromkeys(columns, "FP64"), SKLEARN_TOLERANCE
    )


def xgboost_model(root: Path) -> Case:
    import xgboost

    train, test = _tabular(5, 600), _tabular(6, ROWS)
    features = ["a", "b"]
    model = xgboost.XGBClassifier(n_estimators=15, max_depth=3, random_state=0, n_jobs=1)
    model.fit(train[features], _target(train))
    (root / "xgb").mkdir()
    model.save_model(root / "xgb" / "model.json")
    directory = _directory(
        root,
        "xgb",
        "model.json",
        {"runtime": "xgboost", "inputs": TABULAR_INPUTS[:2], "output": {"kind": "classifier"}},
    )
    expected = _classifier(
        model.classes_, model.predict_proba(test[features]), model.predict(test[features])
    )
    rows = [{k: v for k, v in r.items() if k in features} for r in _rows(test)]
    return Case("xgb", directory, rows, expected, {"a": "FP64", "b": "INT64"})


def lightgbm_model(root: Path) -> Case:
    import lightgbm

    train, test = _tabular(7, 600), _tabular(8, ROWS)
    features = ["a", "b"]
    target = np.digitize(np.nan_to_num(train["a"].to_numpy()), [-1.0, 1.0])
    model = lightgbm.LGBMClassifier(n_estimators=15, random_state=0, n_jobs=1, verbose=-1)
    model.fit(train[features], target)
    (root / "lgbm").mkdir()
    model.booster_.save_model(root / "lgbm" / "model.txt")
    directory = _directory(
        root,
        "lgbm",
        "model.txt",
        {"runtime": "lightgbm", "inputs": TABULAR_INPUTS[:2], "output": {"kind": "classifier"}},
    )
    expected = _classifier(
        model.classes_, model.predict_proba(test[features]), model.predict(test[features])
    )
    rows = [{k: v for k, v in r.items() if k in features} for r in _rows(test)]
    return Case("lgbm", directory, rows, expected, {"a": "FP64", "b": "INT64"})


def onnx_model(root: Path) -> Case:
    """A float32 linear layer + softmax + argmax graph: the ONNX session is the reference."""
    rng = np.random.default_rng(9)
    weight = rng.standard_normal((6, 3)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
            helper.make_node("ArgMax", ["probs"], ["label"], axis=1, keepdims=0),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
            helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 3]),
        ],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    (root / "mlp").mkdir()
    (root / "mlp" / "model.onnx").write_bytes(model.SerializeToString())
    directory = _directory(
        root, "mlp", "model.onnx", {"runtime": "onnx", "output": {"kind": "classifier"}}
    )
    x = rng.normal(0, 2, (ROWS, 6)).astype(np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    labels, probs = session.run(["label", "probs"], {"x": x})
    rows = [{"x": [float(v) for v in row]} for row in x]  # float32 values, exact in float64
    return Case("mlp", directory, rows, _classifier([0, 1, 2], probs, labels), {"x": "FP32"})


PYTHON_MODEL = '''
"""A python-runtime classifier whose answer exposes batch-neighbour effects: the label is
the parity of the integer `k` (exact only if k stays an integer), the probability a logistic
of the number `a` (None: missing)."""
import math


def answer(k, a):
    label = "missing" if k is None else ("odd" if int(k) % 2 else "even")
    p = 0.5 if a is None else 1 / (1 + math.exp(-a))
    return {"label": label, "probabilities": {"yes": p, "no": 1 - p}}


class Records:
    def predict(self, batch):
        return [answer(row["k"], row["a"]) for row in batch]


class Frame:
    def predict(self, frame):
        import pandas as pd

        out = []
        for k, a in zip(frame["k"], frame["a"]):
            out.append(answer(None if pd.isna(k) else k, None if pd.isna(a) else float(a)))
        return out
'''


def python_models(root: Path) -> list[Case]:
    module = root / "python_models"
    module.mkdir()
    (module / "fidelity_python_model.py").write_text(textwrap.dedent(PYTHON_MODEL))
    sys.path.insert(0, str(module))
    import fidelity_python_model as reference  # type: ignore[import-not-found]

    rng = np.random.default_rng(10)
    rows: list[dict[str, Any]] = []
    for i in range(ROWS):
        k: int | None = int(rng.integers(-(2**62), 2**62))
        if i % 7 == 0:
            k = None
        elif i % 5 == 0:
            k = 9007199254740993 + 2 * i  # odd, beyond float64's exact integers
        a = None if i % 11 == 0 else float(rng.normal(0, 3))
        rows.append({"k": k, "a": a})
    expected = [reference.answer(row["k"], row["a"]) for row in rows]
    inputs = [
        {"name": "k", "type": "integer", "nullable": True},
        {"name": "a", "type": "number", "nullable": True},
    ]
    cases = []
    for name, entrypoint, fmt in (
        ("py-records", "fidelity_python_model:Records", "records"),
        ("py-frame", "fidelity_python_model:Frame", "dataframe"),
    ):
        directory = root / name
        directory.mkdir()
        (directory / "fidelity_python_model.py").write_text(textwrap.dedent(PYTHON_MODEL))
        write_config(
            directory,
            {
                "name": name,
                "version": "1",
                "runtime": "python",
                "runtime_options": {"entrypoint": entrypoint, "input_format": fmt},
                "code_paths": ["fidelity_python_model.py"],
                "inputs": inputs,
                "output": {"kind": "classifier"},
            },
        )
        binary = [i for i, r in enumerate(rows) if r["k"] is not None]  # INT64 has no null
        cases.append(
            Case(name, directory, rows, expected, {"k": "INT64", "a": "FP64"}, binary_rows=binary)
        )
    return cases


def titanic_example() -> Case:
    frame = pd.read_csv(TITANIC / "holdout.csv").drop(columns="Survived")
    sys.path.insert(0, str(TITANIC))  # the pickle imports titanic_features (its code_paths)
    try:
        pipeline = joblib.load(TITANIC / "model.joblib")
    finally:
        sys.path.remove(str(TITANIC))
    names = {"0": "died", "1": "survived"}
    expected = _classifier(
        [names[str(c)] for c in pipeline.classes_],
        pipeline.predict_proba(frame),
        [names[str(c)] for c in pipeline.predict(frame)],
    )
    rows = [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
        for r in frame.astype(object).to_dict(orient="records")
    ]
    rows = json.loads(json.dumps(rows, default=lambda v: v.item()))
    types = {"PassengerId": "INT64", "Pclass": "INT64", "Name": "BYTES", "Sex": "BYTES",
             "Age": "FP64", "SibSp": "INT64", "Parch": "INT64", "Ticket": "BYTES",
             "Fare": "FP64", "Cabin": "BYTES", "Embarked": "BYTES"}  # fmt: skip
    binary = [i for i, r in enumerate(rows) if r["Cabin"] is not None and r["Embarked"]]
    return Case("titanic", TITANIC, rows, expected, types, SKLEARN_TOLERANCE, binary_rows=binary)


def car_example() -> Case:
    """The full 1,728-row attribute grid."""
    values = CAR_VALUES
    frame = pd.DataFrame(list(itertools.product(*values.values())), columns=list(values))
    pipeline = joblib.load(CAR / "model.joblib")
    expected = _classifier(
        pipeline.classes_, pipeline.predict_proba(frame), pipeline.predict(frame)
    )
    rows = frame.to_dict(orient="records")
    types = dict.fromkeys(values, "BYTES")
    return Case("car_evaluation", CAR, rows, expected, types, SKLEARN_TOLERANCE)


def torchscript_model(root: Path) -> Case | None:
    try:
        import torch
    except ImportError:
        return None  # an optional extra: the matrix covers it where torch is installed
    torch.manual_seed(0)
    layer = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Softmax(dim=1))
    (root / "torch").mkdir()
    torch.jit.save(torch.jit.script(layer), str(root / "torch" / "model.pt"))
    directory = _directory(
        root,
        "torch",
        "model.pt",
        {
            "runtime": "torchscript",
            "inputs": [{"name": f"f{i}", "type": "number"} for i in range(4)],
            "output": {"kind": "classifier"},
        },
    )
    x = torch.randn(ROWS, 4)
    with torch.no_grad():
        probs = layer(x).to(torch.float64).numpy()
    rows = [{f"f{i}": float(v) for i, v in enumerate(r)} for r in x.tolist()]
    return Case("torch", directory, rows, _classifier([0, 1, 2], probs, probs.argmax(axis=1)),
                {f"f{i}": "FP32" for i in range(4)}, tolerance=1e-6)  # fmt: skip


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory, examples_built: None) -> list[Case]:
    root = tmp_path_factory.mktemp("fidelity")
    built = [
        sklearn_pipeline(root),
        svc_disagreeing(root),
        skops_model(root),
        xgboost_model(root),
        lightgbm_model(root),
        onnx_model(root),
        *python_models(root),
        titanic_example(),
        car_example(),
    ]
    torch_case = torchscript_model(root)
    return built + ([torch_case] if torch_case is not None else [])


@pytest.fixture(scope="module")
def server(cases: list[Case], tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server process (so concurrent requests share its engine's batches)."""
    log = tmp_path_factory.mktemp("fidelity-server") / "server.log"
    args = [str(case.directory) for case in cases]
    env = {"FASTINFER_MAX_ROWS": "2000"}
    with running_server([*args, "--workers", "1"], log, env=env, ready_timeout=120) as running:
        yield running


# -- the paths --------------------------------------------------------------------------------


def v1_one_row_per_request(url: str, case: Case) -> list[Prediction]:
    """Every row its own request, 24 at a time: the engine batches other clients' rows."""

    def one(row: dict[str, Any]) -> Prediction:
        response = client.post(f"/v1/models/{case.name}/predict", json={"inputs": [row]})
        assert response.status_code == 200, response.text
        prediction: Prediction = response.json()["predictions"][0]
        return prediction

    limits = httpx.Limits(max_connections=24)
    with (
        httpx.Client(base_url=url, timeout=60, limits=limits) as client,
        ThreadPoolExecutor(24) as pool,
    ):
        return list(pool.map(one, case.rows))


def v1_many_rows_per_request(url: str, case: Case) -> list[Prediction]:
    out: list[Prediction] = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for start in range(0, len(case.rows), 97):  # uneven chunks: batches of several sizes
            chunk = case.rows[start : start + 97]
            response = client.post(f"/v1/models/{case.name}/predict", json={"inputs": chunk})
            assert response.status_code == 200, response.text
            out += response.json()["predictions"]
    return out


def _from_tensors(
    labels: list[Any], probabilities: np.ndarray, names: list[str]
) -> list[Prediction]:
    return [
        {"label": label.decode() if isinstance(label, bytes) else str(label),
         "probabilities": dict(zip(names, map(float, row), strict=True))}
        for label, row in zip(labels, probabilities, strict=True)
    ]  # fmt: skip


def _label_names(url: str, case: Case) -> list[str]:
    """The probability columns' labels: the model's (metadata), else the order of its answers
    (a python model that declares no classes: the server keeps the order the model gives)."""
    labels: list[str] | None = httpx.get(f"{url}/v1/models/{case.name}").json()["output"]["labels"]
    return labels if labels is not None else list(case.expected[0]["probabilities"])


def v2_json(url: str, case: Case) -> list[Prediction]:
    inputs = [
        {"name": name, "datatype": datatype, "shape": [len(case.rows)],
         "data": [row.get(name) for row in case.rows]}
        if datatype != "FP32" else
        {"name": name, "datatype": datatype, "shape": [len(case.rows), len(case.rows[0][name])],
         "data": [row[name] for row in case.rows]}
        for name, datatype in case.v2_types.items()
    ]  # fmt: skip
    response = httpx.post(f"{url}/v2/models/{case.name}/infer", json={"inputs": inputs}, timeout=60)
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    probabilities = np.array(outputs["probabilities"]["data"], dtype=np.float64)
    probabilities = probabilities.reshape(outputs["probabilities"]["shape"])
    return _from_tensors(outputs["label"]["data"], probabilities, _label_names(url, case))


_NUMPY = {"BYTES": np.object_, "INT64": np.int64, "FP64": np.float64, "FP32": np.float32}


def v2_binary(url: str, case: Case) -> tuple[list[int], list[Prediction]]:
    """The rows a binary tensor can carry, through tritonclient (its default: binary both ways)."""
    chosen = case.binary_rows if case.binary_rows is not None else list(range(len(case.rows)))
    rows = [case.rows[i] for i in chosen]
    inputs = []
    for name, datatype in case.v2_types.items():
        values = [np.nan if row.get(name) is None else row[name] for row in rows]
        array = np.array(values, dtype=_NUMPY[datatype])
        tensor = triton.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=True)
        inputs.append(tensor)
    client = triton.InferenceServerClient(url.removeprefix("http://"), network_timeout=60)
    try:
        result = client.infer(case.name, inputs)
    finally:
        client.close()
    predictions = _from_tensors(
        list(result.as_numpy("label")), result.as_numpy("probabilities"), _label_names(url, case)
    )
    return chosen, predictions


def cli_predict(case: Case, tmp_path: Path) -> list[Prediction]:
    source = tmp_path / f"{case.name}.jsonl"
    source.write_text("\n".join(json.dumps(row) for row in case.rows))
    result = CliRunner().invoke(cli_app, ["predict", str(case.directory), str(source),
                                          "--no-progress"])  # fmt: skip
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    return [{k: v for k, v in r.items() if k != "row"} for r in records]


# -- the comparison ---------------------------------------------------------------------------


def assert_same(
    case: Case, path: str, served: list[Prediction], rows: list[int] | None = None
) -> None:
    expected = case.expected if rows is None else [case.expected[i] for i in rows]
    assert len(served) == len(expected), f"{case.name} via {path}: row count"
    wrong_labels = [i for i, (s, e) in enumerate(zip(served, expected, strict=True))
                    if s["label"] != e["label"]]  # fmt: skip
    assert not wrong_labels, (
        f"{case.name} via {path}: {len(wrong_labels)} labels differ from the model's own, "
        f"e.g. row {wrong_labels[0]}: {served[wrong_labels[0]]} != {expected[wrong_labels[0]]}"
    )
    worst = 0.0
    for s, e in zip(served, expected, strict=True):
        assert list(s["probabilities"]) == list(e["probabilities"]), f"{case.name}: classes"
        for label, p in e["probabilities"].items():
            worst = max(worst, abs(s["probabilities"][label] - p))
    assert worst <= case.tolerance, (
        f"{case.name} via {path}: probabilities differ from the model's own by up to {worst:g} "
        f"(allowed {case.tolerance:g})"
    )


PATHS: dict[str, Callable[[str, Case], list[Prediction]]] = {
    "v1, one row per request, concurrent": v1_one_row_per_request,
    "v1, many rows per request": v1_many_rows_per_request,
    "v2 JSON": v2_json,
}


@pytest.mark.parametrize("path", list(PATHS))
def test_served_answers_are_the_models_own(
    server: RunningServer, cases: list[Case], path: str
) -> None:
    for case in cases:
        assert_same(case, path, PATHS[path](server.url, case))


def test_v2_binary_answers_are_the_models_own(server: RunningServer, cases: list[Case]) -> None:
    for case in cases:
        chosen, served = v2_binary(server.url, case)
        assert_same(case, "v2 binary", served, chosen)


def test_local_scoring_answers_are_the_models_own(
    server: RunningServer, cases: list[Case], tmp_path: Path
) -> None:
    for case in cases:
        assert_same(case, "fastinfer predict", cli_predict(case, tmp_path))


def test_the_matrix_covers_every_runtime(cases: list[Case]) -> None:
    runtimes = set()
    for case in cases:
        config = (case.directory / "model.yaml").read_text()
        runtimes |= {r for r in ("sklearn", "onnx", "xgboost", "lightgbm", "python") if
                     f"runtime: {r}" in config}  # fmt: skip
    assert runtimes == {"sklearn", "onnx", "xgboost", "lightgbm", "python"}
    assert any(c.directory.joinpath("model.skops").exists() for c in cases)
    assert {"py-records", "py-frame", "titanic", "car_evaluation"} <= {c.name for c in cases}
    assert all(len(c.rows) >= 200 for c in cases)


def test_the_matrix_serves_the_compiled_sklearn_path(server: RunningServer) -> None:
    """The answers above came through the compiled pipeline path where it applies (issue 15):
    every speed-up on, the model's own answers."""
    compiled = {
        name: httpx.get(f"{server.url}/v1/models/{name}").json()["runtime_info"]
        for name in ("pipeline", "skops3", "svc", "titanic")
    }
    assert compiled["pipeline"]["compiled"] is True, compiled["pipeline"]
    assert compiled["skops3"]["compiled"] is True, compiled["skops3"]
    assert compiled["svc"]["compiled"] is False  # an SVC: the pipeline answers
    # Its own feature transformer runs as it is; the LogisticRegression after it is compiled.
    assert compiled["titanic"]["compiled"] is True, compiled["titanic"]
    assert compiled["titanic"]["compiled_steps"].startswith("TitanicFeatures run as they are")
    assert "transform_rows" in compiled["titanic"]["compiled_steps"]  # no DataFrame per batch
