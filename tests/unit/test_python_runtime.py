"""The python runtime: models that are code, from code_paths or from an installed package."""

from __future__ import annotations

import base64
import hashlib
import importlib
import importlib.metadata
import importlib.util
import shutil
import subprocess
import sys
import textwrap
import time
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from fastinfer.model.spec import InputField, OutputSpec, load_model_directory
from fastinfer.runtimes import create_runtime
from fastinfer.runtimes.python import PythonRuntime
from tests.conftest import serve_in_process, sha256_of, wait_ready, write_config

MODEL_PACKAGE = Path(__file__).resolve().parent.parent / "fixtures" / "model_package"
PREFIX = "fi_pymodel_"  # every module these tests write; dropped from sys.modules after each test
DEMO_PACKAGE = "fastinfer_demo_model"


@pytest.fixture(autouse=True)
def isolated_imports(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The registry adds code paths to sys.path: keep them, and the modules, to one test."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    for name in [n for n in sys.modules if n.startswith((PREFIX, DEMO_PACKAGE))]:
        del sys.modules[name]
    importlib.invalidate_caches()


def write_module(directory: Path, relative: str, source: str) -> Path:
    path = directory / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    importlib.invalidate_caches()
    return path


def python_model(
    directory: Path,
    name: str,
    entrypoint: str,
    *,
    code_paths: list[str] | None = None,
    runtime_options: dict[str, Any] | None = None,
    **config: Any,
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    body: dict[str, Any] = {
        "name": name,
        "version": "1",
        "runtime": "python",
        "runtime_options": {"entrypoint": entrypoint, **(runtime_options or {})},
        "code_paths": code_paths or [],
        **config,
    }
    return write_config(directory, body)


def loaded(entrypoint: str, output: OutputSpec | None = None, **options: Any) -> PythonRuntime:
    runtime = create_runtime(
        "python",
        output or OutputSpec(kind="tensor"),
        {
            "entrypoint": entrypoint,
            **options,
        },
    )
    assert isinstance(runtime, PythonRuntime)
    runtime.load(b"")
    return runtime


def wait_settled(client: TestClient, timeout: float = 30.0) -> dict[str, Any]:
    """The /readyz body once no model is still loading."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body: dict[str, Any] = client.get("/readyz").json()
        if "loading" not in body.get("details", {}).get("models", {}).values():
            return body
        time.sleep(0.02)
    raise AssertionError("models still loading")


# --- models from code_paths, served ---------------------------------------------------------


def test_function_model_from_a_code_path(tmp_path: Path) -> None:
    directory = tmp_path / "fn"
    write_module(
        directory,
        "fi_pymodel_fn.py",
        """
        import numpy as np

        def predict(batch):
            assert isinstance(batch, list) and isinstance(batch[0], dict)
            return np.array([2 * row["a"] + row["b"] for row in batch], dtype=np.float32)
        """,
    )
    python_model(
        directory,
        "fn",
        "fi_pymodel_fn:predict",
        code_paths=["fi_pymodel_fn.py"],
        inputs=[{"name": "a", "type": "number"}, {"name": "b", "type": "integer"}],
        output={"kind": "regressor"},
        example={"a": 1.5, "b": 2},
        expected_example_output=5.0,
    )
    with serve_in_process(directory) as client:
        wait_ready(client)
        meta = client.get("/v1/models/fn").json()
        response = client.post(
            "/v1/models/fn/predict", json={"inputs": [{"a": 0.25, "b": 1}, {"a": -3, "b": 0}]}
        )
    assert meta["runtime"] == "python" and meta["self_test"] == "passed"
    assert meta["sha256"] is None  # no artefact: the code is the model
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == [{"value": 1.5}, {"value": -6.0}]


def test_class_model_gets_model_dir_init_kwargs_and_a_dataframe(tmp_path: Path) -> None:
    directory = tmp_path / "cls"
    write_module(directory, "fi_pymodel_pkg/__init__.py", "")
    write_module(
        directory,
        "fi_pymodel_pkg/scorer.py",
        """
        import json

        import numpy as np
        import pandas as pd

        class Scorer:
            def __init__(self, model_dir, scale):
                self.offsets = json.loads((model_dir / "offsets.json").read_text())
                self.scale = scale

            def predict(self, frame):
                assert isinstance(frame, pd.DataFrame)
                assert list(frame.columns) == ["x", "colour"]
                assert frame["x"].dtype == np.float64
                scores = frame["x"].to_numpy() * self.scale
                return [
                    {"score": np.float32(s + self.offsets[c]), "parts": np.array([s, c == "red"])}
                    for s, c in zip(scores, frame["colour"])
                ]
        """,
    )
    (directory / "offsets.json").write_text('{"red": 100, "blue": 0}')
    python_model(
        directory,
        "cls",
        "fi_pymodel_pkg.scorer:Scorer",
        code_paths=["fi_pymodel_pkg"],
        runtime_options={"init_kwargs": {"scale": 10}, "input_format": "dataframe"},
        inputs=[
            {"name": "x", "type": "number", "nullable": True},
            {"name": "colour", "type": "string", "allowed": ["red", "blue"]},
        ],
        output={"kind": "tensor"},
        example={"x": 1, "colour": "red"},
    )
    with serve_in_process(directory) as client:
        wait_ready(client)
        response = client.post(
            "/v1/models/cls/predict",
            json={"inputs": [{"x": 0.5, "colour": "red"}, {"x": 2, "colour": "blue"}]},
        )
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == [
        {"score": 105.0, "parts": [5.0, 1.0]},
        {"score": 20.0, "parts": [20.0, 0.0]},
    ]


def test_classifier_class_with_predict_proba_and_classes(tmp_path: Path) -> None:
    """Probabilities from predict_proba, the label from the model's own predict: here its rule
    (7 links or more) disagrees with the most probable class at 6 links, and predict wins."""
    directory = tmp_path / "spam"
    write_module(
        directory,
        "fi_pymodel_spam.py",
        """
        import numpy as np

        class SpamFilter:
            classes_ = np.array(["ham", "spam"])

            def predict(self, batch):
                return np.array(["spam" if row["links"] >= 7 else "ham" for row in batch])

            def predict_proba(self, batch):
                p = np.array([min(row["links"] / 10, 1.0) for row in batch])
                return np.column_stack([1 - p, p])
        """,
    )
    python_model(
        directory,
        "spam",
        "fi_pymodel_spam:SpamFilter",
        code_paths=["fi_pymodel_spam.py"],
        inputs=[{"name": "links", "type": "integer", "minimum": 0}],
        output={"kind": "classifier", "labels": {"spam": "SPAM"}},
        example={"links": 9},
        expected_example_output="SPAM",
    )
    with serve_in_process(directory) as client:
        wait_ready(client)
        response = client.post(
            "/v1/models/spam/predict",
            json={"inputs": [{"links": 2}, {"links": 30}, {"links": 6}]},
        )
        schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == [
        {"label": "ham", "probabilities": {"ham": 0.8, "SPAM": 0.2}},
        {"label": "SPAM", "probabilities": {"ham": 0.0, "SPAM": 1.0}},
        {"label": "ham", "probabilities": {"ham": 1 - 0.6, "SPAM": 0.6}},
    ]
    item = schemas["SpamPredictResponse"]["properties"]["predictions"]["items"]
    assert item["properties"]["label"]["enum"] == ["ham", "SPAM"]


def test_inputs_attribute_is_the_schema_and_bad_rows_get_typed_422s(tmp_path: Path) -> None:
    directory = tmp_path / "typed"
    write_module(
        directory,
        "fi_pymodel_typed.py",
        """
        class Pricing:
            inputs = [
                {"name": "age", "type": "integer", "minimum": 0, "maximum": 150},
                {"name": "colour", "type": "string", "allowed": ["red", "blue"]},
            ]

            def predict(self, batch):
                return [
                    {"label": "discount" if r["age"] > 60 else "full", "probabilities": None}
                    for r in batch
                ]
        """,
    )
    python_model(
        directory,
        "typed",
        "fi_pymodel_typed:Pricing",
        code_paths=["fi_pymodel_typed.py"],
        output={"kind": "classifier"},
        example={"age": 70, "colour": "red"},
        expected_example_output="discount",
    )
    assert load_model_directory(directory).config.inputs is None
    with serve_in_process(directory) as client:
        wait_ready(client)
        meta = client.get("/v1/models/typed").json()
        good = client.post(
            "/v1/models/typed/predict", json={"inputs": [{"age": 30, "colour": "blue"}]}
        )
        bad = client.post(
            "/v1/models/typed/predict",
            json={"inputs": [{"age": 30, "colour": "blue"}, {"age": "old", "colour": "green"}]},
        )
    assert [f["name"] for f in meta["inputs"]] == ["age", "colour"]
    assert meta["input_schema"]["properties"]["age"]["type"] == "integer"
    assert good.status_code == 200, good.text
    assert good.json()["predictions"] == [{"label": "full", "probabilities": None}]
    assert bad.status_code == 422, bad.text
    problems = bad.json()["details"]
    assert {(p["row"], p["field"]) for p in problems} == {(1, "age"), (1, "colour")}


def test_tensor_fields_reach_records_as_plain_lists(tmp_path: Path) -> None:
    """The numeric fast path hands tensor fields over as arrays; the model still sees lists."""
    directory = tmp_path / "vec"
    write_module(
        directory,
        "fi_pymodel_vec.py",
        """
        def predict(batch):
            return [{"total": sum(r["v"]), "kind": type(r["v"]).__name__} for r in batch]
        """,
    )
    python_model(
        directory,
        "vec",
        "fi_pymodel_vec:predict",
        code_paths=["fi_pymodel_vec.py"],
        inputs=[{"name": "v", "type": "number", "shape": [3]}],
        output={"kind": "tensor"},
    )
    with serve_in_process(directory) as client:
        wait_ready(client)
        response = client.post(
            "/v1/models/vec/predict", json={"inputs": [{"v": [1, 2, 3.5]}, {"v": [0, 0, -1]}]}
        )
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == [
        {"total": 6.5, "kind": "list"},
        {"total": -1.0, "kind": "list"},
    ]


def test_a_pinned_artefact_is_handed_to_load(tmp_path: Path) -> None:
    directory = tmp_path / "art"
    write_module(
        directory,
        "fi_pymodel_art.py",
        """
        import json

        class Table:
            def load(self, data):
                self.table = json.loads(data)

            def predict(self, batch):
                return [self.table[row["key"]] for row in batch]
        """,
    )
    (directory / "table.json").write_text('{"a": 1.5, "b": -2}')
    config: dict[str, Any] = {
        "code_paths": ["fi_pymodel_art.py"],
        "inputs": [{"name": "key", "type": "string", "allowed": ["a", "b"]}],
        "output": {"kind": "regressor"},
    }
    python_model(
        directory,
        "art",
        "fi_pymodel_art:Table",
        artefact={"path": "table.json", "sha256": sha256_of(directory / "table.json")},
        **config,
    )
    with serve_in_process(directory) as client:
        wait_ready(client)
        meta = client.get("/v1/models/art").json()
        response = client.post("/v1/models/art/predict", json={"inputs": [{"key": "b"}]})
    assert meta["sha256"] == sha256_of(directory / "table.json")
    assert response.json()["predictions"] == [{"value": -2.0}]

    # Unpinned, the artefact is refused: the model's load() may unpickle it.
    python_model(
        directory, "art", "fi_pymodel_art:Table", artefact={"path": "table.json"}, **config
    )
    with serve_in_process(directory) as client:
        reason = wait_settled(client)["details"]["models"]["art"]
    assert "no sha256 pin" in reason
    runtime = PythonRuntime(OutputSpec(), {"entrypoint": "fi_pymodel_art:Table"})
    assert runtime.needs_trust(b"{}") and not runtime.needs_trust(b"")


# --- the embedded layout: a model that is its own pip package --------------------------------


def _can_build_offline() -> bool:
    """setuptools builds wheels without the `wheel` package only from version 70.1 on."""
    try:
        version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        return False
    major, minor = (int(p) for p in version.split(".")[:2])
    return importlib.util.find_spec("wheel") is not None or (major, minor) >= (70, 1)


def _hand_built_wheel(source: Path, out: Path) -> Path:
    """A PEP 427 wheel of the fixture's `src/` packages, named and versioned by its pyproject."""
    project = tomllib.loads((source / "pyproject.toml").read_text())["project"]
    dist = project["name"].replace("-", "_")
    info = f"{dist}-{project['version']}.dist-info"
    files = {
        path.relative_to(source / "src").as_posix(): path.read_bytes()
        for path in sorted((source / "src").rglob("*.py"))
    }
    files[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    ).encode()
    files[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: fastinfer-tests\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n"
    )
    files[f"{info}/top_level.txt"] = (DEMO_PACKAGE + "\n").encode()
    record = [f"{name},sha256={_digest(data)},{len(data)}" for name, data in files.items()]
    files[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    wheel = out / f"{dist}-{project['version']}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return wheel


def _digest(data: bytes) -> str:
    """A RECORD hash: urlsafe base64 of the sha256, unpadded."""
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def demo_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/fixtures/model_package pip-installed (offline) into a folder of its own.

    The source is copied first, so a build's `build/` and `*.egg-info` never land in the repo.
    With a setuptools that cannot build offline (the venv's, before 70.1, without `wheel`),
    the wheel is assembled here from the same pyproject and pip installs that instead.
    """
    work = tmp_path_factory.mktemp("demo_package")
    source = work / "source"
    shutil.copytree(MODEL_PACKAGE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    target = source if _can_build_offline() else _hand_built_wheel(source, work)
    site = work / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-index",
            "--no-build-isolation",
            "--no-deps",
            "--target",
            str(site),
            str(target),
        ],
        check=True,
        cwd=work,
    )
    return site


def test_embedded_package_serves_its_installed_version(demo_site: Path, tmp_path: Path) -> None:
    sys.path.insert(0, str(demo_site))
    importlib.invalidate_caches()
    directory = write_config(
        tmp_path,
        {
            "name": "demo",
            "runtime": "python",
            "runtime_options": {
                "entrypoint": "fastinfer_demo_model:DemoModel",
                "init_kwargs": {"weight": 3},
            },
            "output": {"kind": "regressor"},
            "example": {"x": 2, "offset": 1},
            "expected_example_output": 7.0,
        },
    )
    assert load_model_directory(directory).config.version == "2.3.1"
    with serve_in_process(directory) as client:
        wait_ready(client)
        meta = client.get("/v1/models/demo").json()
        response = client.post(
            "/v1/models/demo/predict", json={"inputs": [{"x": 1.5}, {"x": -1, "offset": 0.5}]}
        )
    assert meta["version"] == "2.3.1" and meta["self_test"] == "passed"
    assert [f["name"] for f in meta["inputs"]] == ["x", "offset"]  # from DemoModel.inputs
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["version"] == "2.3.1"
    assert body["predictions"] == [{"value": 4.5}, {"value": -2.5}]
    import fastinfer_demo_model  # type: ignore[import-not-found]

    assert Path(fastinfer_demo_model.__file__).is_relative_to(demo_site)


def test_fixture_package_leaves_no_build_files_in_the_repo(demo_site: Path) -> None:
    assert (demo_site / DEMO_PACKAGE / "__init__.py").is_file()
    leftovers = [
        p.name for p in MODEL_PACKAGE.rglob("*") if p.name == "build" or ".egg-info" in p.name
    ]
    assert leftovers == []


# --- the runtime on its own: outputs and failures -------------------------------------------


def test_scalar_labels_map_through_output_labels(tmp_path: Path) -> None:
    write_module(
        tmp_path,
        "fi_pymodel_labels.py",
        """
        import numpy as np

        def predict(batch):
            return np.array([int(r["x"] > 0) for r in batch])
        """,
    )
    sys.path.insert(0, str(tmp_path))
    runtime = loaded(
        "fi_pymodel_labels:predict", OutputSpec(kind="classifier", labels={"1": "yes"})
    )
    assert runtime.output_labels() is None
    assert runtime.predict([{"x": 3}, {"x": -3}], ["x"]) == [{"label": "yes"}, {"label": "0"}]


def test_bad_entrypoints_fail_naming_the_entrypoint(tmp_path: Path) -> None:
    write_module(
        tmp_path,
        "fi_pymodel_bad.py",
        """
        THRESHOLD = 3

        class NoPredict:
            pass

        class Broken:
            def __init__(self, size):
                raise RuntimeError("weights missing")

            def predict(self, batch):
                return []

        def short(batch):
            return [1.0]

        def one_number(batch):
            return 1.0
        """,
    )
    write_module(tmp_path, "fi_pymodel_needs_dep.py", "import fi_pymodel_not_installed\n")
    sys.path.insert(0, str(tmp_path))
    rows = [{"x": 1}, {"x": 2}]

    with pytest.raises(ImportError, match=r"'fi_pymodel_nope:predict': no module named"):
        loaded("fi_pymodel_nope:predict")
    with pytest.raises(ImportError, match=r"imports 'fi_pymodel_not_installed'"):
        loaded("fi_pymodel_needs_dep:predict")
    with pytest.raises(AttributeError, match=r"'fi_pymodel_bad' has no attribute 'predikt'"):
        loaded("fi_pymodel_bad:predikt")
    with pytest.raises(TypeError, match=r"'fi_pymodel_bad:THRESHOLD' is a int: expected a class"):
        loaded("fi_pymodel_bad:THRESHOLD")
    with pytest.raises(TypeError, match=r"'fi_pymodel_bad:NoPredict' is a NoPredict"):
        loaded("fi_pymodel_bad:NoPredict")
    with pytest.raises(RuntimeError, match=r"Broken\(\*\*\['size'\]\) failed.*weights missing"):
        loaded("fi_pymodel_bad:Broken", init_kwargs={"size": 3})
    with pytest.raises(TypeError, match="not a class, so runtime option init_kwargs"):
        loaded("fi_pymodel_bad:short", init_kwargs={"size": 3})
    with pytest.raises(TypeError, match="has no load"):
        PythonRuntime(OutputSpec(), {"entrypoint": "fi_pymodel_bad:short"}).load(b"weights")
    with pytest.raises(
        ValueError, match=r"entrypoint 'fi_pymodel_bad:short' returned 1 predictions for 2 rows"
    ):
        loaded("fi_pymodel_bad:short", OutputSpec(kind="regressor")).predict(rows, ["x"])
    with pytest.raises(TypeError, match="returned a float; expected a list"):
        loaded("fi_pymodel_bad:one_number", OutputSpec(kind="regressor")).predict(rows, ["x"])


def test_options_are_checked_when_the_runtime_is_created() -> None:
    with pytest.raises(ValueError, match="needs runtime option entrypoint"):
        PythonRuntime(OutputSpec(), {})
    with pytest.raises(ValueError, match=r"must look like 'package.module:Attribute'"):
        PythonRuntime(OutputSpec(), {"entrypoint": "package.module.Model"})
    with pytest.raises(ValueError, match="input_format must be one of records, dataframe"):
        PythonRuntime(OutputSpec(), {"entrypoint": "m:f", "input_format": "arrow"})
    with pytest.raises(ValueError, match="init_kwargs must be a mapping"):
        PythonRuntime(OutputSpec(), {"entrypoint": "m:f", "init_kwargs": [1]})
    with pytest.raises(ValueError, match="must not set model_dir"):
        PythonRuntime(OutputSpec(), {"entrypoint": "m:f", "init_kwargs": {"model_dir": "/"}})
    with pytest.raises(ValueError, match="unknown python runtime option"):
        PythonRuntime(OutputSpec(), {"entrypoint": "m:f", "entry_point": "m:f"})


def test_results_that_do_not_fit_the_output_kind_are_explained(tmp_path: Path) -> None:
    write_module(
        tmp_path,
        "fi_pymodel_shapes.py",
        """
        import numpy as np

        def no_label(batch):
            return [{"class": "a"} for _ in batch]

        def text(batch):
            return ["high" for _ in batch]

        def column(batch):
            return np.array([[1.0] for _ in batch])

        def opaque(batch):
            return [object() for _ in batch]

        class Proba:
            classes = [0, 1]

            def predict(self, batch):
                return []

            def predict_proba(self, batch):
                return [[0.2, 0.3, 0.5] for _ in batch]
        """,
    )
    sys.path.insert(0, str(tmp_path))
    rows = [{"x": 1}]
    classifier, regressor = OutputSpec(kind="classifier"), OutputSpec(kind="regressor")
    with pytest.raises(TypeError, match="dict without 'label'"):
        loaded("fi_pymodel_shapes:no_label", classifier).predict(rows, ["x"])
    with pytest.raises(TypeError, match="returned 'high' where a number belongs"):
        loaded("fi_pymodel_shapes:text", regressor).predict(rows, ["x"])
    assert loaded("fi_pymodel_shapes:column", regressor).predict(rows, ["x"]) == [{"value": 1.0}]
    with pytest.raises(TypeError, match="returned a object .* cannot be sent as JSON"):
        loaded("fi_pymodel_shapes:opaque").predict(rows, ["x"])
    proba = loaded("fi_pymodel_shapes:Proba", classifier)
    assert proba.output_labels() == ["0", "1"]
    with pytest.raises(ValueError, match=r"predict_proba gave shape \[1, 3\]; expected \[1, 2\]"):
        proba.predict(rows, ["x"])


def test_a_wrong_length_fails_the_self_test_and_the_model(tmp_path: Path) -> None:
    directory = tmp_path / "short"
    write_module(directory, "fi_pymodel_short.py", "def predict(batch):\n    return []\n")
    python_model(
        directory,
        "short",
        "fi_pymodel_short:predict",
        code_paths=["fi_pymodel_short.py"],
        inputs=[{"name": "x", "type": "number"}],
        output={"kind": "regressor"},
        example={"x": 1},
    )
    with serve_in_process(directory) as client:
        reason = wait_settled(client)["details"]["models"]["short"]
    assert "'fi_pymodel_short:predict' returned 0 predictions for 1 rows" in reason


def test_class_inputs_that_are_not_fields_are_explained(tmp_path: Path) -> None:
    write_module(
        tmp_path,
        "fi_pymodel_inputs.py",
        """
        class Model:
            inputs = [{"name": "x", "type": "float"}]

            def predict(self, batch):
                return batch
        """,
    )
    sys.path.insert(0, str(tmp_path))
    runtime = loaded("fi_pymodel_inputs:Model")
    with pytest.raises(ValueError, match=r"inputs\[0\] is not a valid field: type"):
        runtime.derived_inputs()
    assert loaded("fi_pymodel_inputs:Model").predict([{"x": np.float64(2)}], ["x"]) == [{"x": 2.0}]
    assert PythonRuntime(OutputSpec(), {"entrypoint": "m:f"}).derived_inputs() is None


def test_dataframe_columns_do_not_depend_on_the_batch(tmp_path: Path) -> None:
    """A row's frame is the same alone and beside rows holding nulls: the dtypes come from the
    schema, and a nullable integer keeps 9007199254740993 exactly (Int64, not float64)."""
    write_module(
        tmp_path,
        "fi_pymodel_probe.py",
        """
        import pandas as pd

        def predict(frame):
            return [
                {name: f"{frame[name].dtype}: {frame[name].iloc[i]!r}" for name in frame.columns}
                for i in range(len(frame))
            ]
        """,
    )
    sys.path.insert(0, str(tmp_path))
    runtime = loaded("fi_pymodel_probe:predict", input_format="dataframe")
    fields = [
        InputField(name="k", type="integer", nullable=True),
        InputField(name="n", type="integer"),
        InputField(name="x", type="number", nullable=True),
        InputField(name="b", type="boolean", nullable=True),
        InputField(name="s", type="string", nullable=True),
        InputField(name="a", type="any", nullable=True),
    ]
    runtime.bind_schema(fields)
    columns = [f.name for f in fields]
    row = {"k": 9007199254740993, "n": 2**62 + 1, "x": 0.1, "b": True, "s": "a", "a": 7}
    empty = {"k": None, "n": 1, "x": None, "b": None, "s": None, "a": None}
    mixed = {"k": 1, "n": 1, "x": 1.0, "b": False, "s": "b", "a": "text"}
    alone = runtime.predict([row], columns)[0]
    for neighbours in ([empty], [mixed], [empty, mixed]):
        assert runtime.predict([row, *neighbours], columns)[0] == alone
    assert runtime.predict([empty], columns) == runtime.predict([empty, row], columns)[:1]
    assert alone["k"] == "Int64: np.int64(9007199254740993)"
    assert alone["n"] == f"int64: np.int64({2**62 + 1})"
