"""Shared fixtures: models built by the tests themselves, deterministically, and the committed
example models."""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
import pytest
import yaml
from fastapi.testclient import TestClient
from sklearn.linear_model import LogisticRegression

from fastinfer.config import Settings
from fastinfer.serving.app import create_app

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
TITANIC = EXAMPLES / "titanic"
CAR = EXAMPLES / "car_evaluation"
# The six UCI attributes and their values: the full grid is 1,728 cars.
CAR_VALUES = {
    "buying": ["vhigh", "high", "med", "low"],
    "maint": ["vhigh", "high", "med", "low"],
    "doors": ["2", "3", "4", "5more"],
    "persons": ["2", "4", "more"],
    "lug_boot": ["small", "med", "big"],
    "safety": ["low", "med", "high"],
}


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_config(directory: Path, config: dict[str, Any]) -> Path:
    (directory / "model.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return directory


def build_tiny_model(directory: Path, *, name: str = "tiny", version: str = "1") -> Path:
    """A two-feature logistic regression: x large → 'high'."""
    directory.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame({"x": [0.0, 1, 2, 3, 4, 5, 6, 7], "colour": [0.0, 1, 0, 1, 0, 1, 0, 1]})
    target = ["low", "low", "low", "low", "high", "high", "high", "high"]
    model = LogisticRegression(random_state=0).fit(frame, target)
    artefact = directory / "model.joblib"
    joblib.dump(model, artefact)
    return write_config(
        directory,
        {
            "name": name,
            "version": version,
            "runtime": "sklearn",
            "artefact": {"path": "model.joblib", "sha256": sha256_of(artefact)},
            "inputs": [
                {"name": "x", "type": "number", "minimum": -100, "maximum": 100},
                {"name": "colour", "type": "integer", "allowed": [0, 1]},
            ],
            "example": {"x": 6.5, "colour": 1},
            "expected_example_output": "high",
            "output": {"kind": "classifier"},
        },
    )


@pytest.fixture(scope="session")
def examples_built() -> None:
    """The committed example artefacts, checked against their pins; never retrained here (a
    retrain on another machine may write other bytes: `make retrain` is the deliberate way)."""
    for folder in (TITANIC, CAR):
        config = yaml.safe_load((folder / "model.yaml").read_text(encoding="utf-8"))
        artefact = folder / config["artefact"]["path"]
        if not artefact.is_file():
            pytest.fail(f"{artefact} is missing: restore it with `git checkout -- {folder}`")
        if sha256_of(artefact) != config["artefact"]["sha256"]:
            pytest.fail(f"{artefact} does not match the pin in {folder / 'model.yaml'}")


@pytest.fixture
def tiny_dir(tmp_path: Path) -> Path:
    return build_tiny_model(tmp_path / "tiny")


def wait_ready(client: TestClient, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get("/readyz")
        if response.status_code == 200:
            return
        reasons = response.json()["details"]["models"].values()
        if any(reason not in ("loading", "starting") for reason in reasons):
            raise AssertionError(f"a model failed to load: {response.json()}")
        time.sleep(0.02)
    raise AssertionError(f"not ready after {timeout}s: {client.get('/readyz').json()}")


def serve_in_process(*model_dirs: Path, ready: bool = True, **settings: Any) -> TestClient:
    """An in-process client; use it as a context manager so the lifespan runs."""
    app = create_app(Settings(model_dirs=list(model_dirs), **settings))
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def tiny_client(tiny_dir: Path) -> Iterator[TestClient]:
    with serve_in_process(tiny_dir) as client:
        wait_ready(client)
        yield client


@pytest.fixture(scope="module")
def examples_client(examples_built: None) -> Iterator[TestClient]:
    with serve_in_process(TITANIC, CAR, max_rows=64, max_body_bytes=64 * 1024) as client:
        wait_ready(client)
        yield client


SCRIPTED_SOURCE = Path(__file__).parent / "fixtures" / "scripted_model.py"


def build_scripted_model(
    directory: Path, *, name: str = "scripted", batching: dict[str, Any] | None = None
) -> Path:
    """A model directory for `tests/fixtures/scripted_model.py` (its module ships in code_paths)."""
    import shutil

    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(SCRIPTED_SOURCE, directory / "scripted_model.py")
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))
    import scripted_model  # type: ignore[import-not-found]

    artefact = directory / "model.joblib"
    joblib.dump(scripted_model.Scripted(), artefact)
    config: dict[str, Any] = {
        "name": name,
        "version": "1",
        "artefact": {"path": "model.joblib", "sha256": sha256_of(artefact)},
        "code_paths": ["scripted_model.py"],
        "inputs": [
            {"name": "x", "type": "number"},
            {"name": "sleep", "type": "number", "nullable": True, "minimum": 0},
            {"name": "spin", "type": "number", "nullable": True, "minimum": 0},
        ],
        "example": {"x": 7},
    }
    if batching:
        config["batching"] = batching
    return write_config(directory, config)


def scripted_calls() -> list[list[float]]:
    """The in-process call log of the scripted model (import it after building one)."""
    import scripted_model  # type: ignore[import-not-found]

    calls: list[list[float]] = scripted_model.CALLS
    return calls
