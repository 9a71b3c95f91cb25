"""`fastinfer build` for real: an XGBoost model scaffolded by `fastinfer init` is baked into an
image with podman, as test_container.py builds deploy/Dockerfile here (the bootstrapped base,
the locked wheels plus the extras' wheels downloaded on the host, no package index), then run
read-only, unprivileged, and asked for a prediction on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from fastinfer.scaffold.build import scaffold
from fastinfer.scaffold.image import extras_lock
from tests.conftest import REPO
from tests.integration.server import free_port
from tests.integration.test_container import (
    BASE_IMAGE,
    UID,
    WHEELHOUSE,
    Container,
    _bootstrap_base,
    _choose_runtime,
    _fill_wheelhouse,
    _install_podman,
    _machine_lock,
    _podman_env,
    _wait_ready,
    podman,
)

pytestmark = [pytest.mark.slow, pytest.mark.container, pytest.mark.timeout(1200)]

EXTRAS_WHEELHOUSE = REPO / "deploy" / "build" / "wheels-extras"
PACKAGES = ["xgboost-cpu"]


def _fill_extras_wheelhouse() -> None:
    """The extras' locked wheels, for the base image's Python (3.11), hash-checked."""
    lock = EXTRAS_WHEELHOUSE.parent / "extras.lock"
    EXTRAS_WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    lock.write_text(extras_lock(REPO / "requirements", PACKAGES))
    subprocess.run(
        [
            sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
            "--only-binary=:all:", "--python-version", "3.11", "--no-deps", "--require-hashes",
            "--dest", str(EXTRAS_WHEELHOUSE), "-r", str(lock),
        ],
        check=True,
        timeout=600,
    )  # fmt: skip


def _scaffold_xgboost(root: Path) -> Path:
    """Train a small XGBoost classifier and let `fastinfer init`'s scaffold write its directory."""
    import xgboost

    rng = np.random.default_rng(7)
    frame = pd.DataFrame({"a": rng.normal(0, 3, 400), "b": rng.integers(0, 50, 400)})
    frame["y"] = ((frame["a"] + frame["b"] / 10 - 2) > 0).astype(int)
    model = xgboost.XGBClassifier(n_estimators=15, max_depth=3, random_state=0, n_jobs=1)
    model.fit(frame[["a", "b"]], frame["y"])
    root.mkdir(parents=True)
    model.save_model(root / "churn.json")
    frame.to_csv(root / "sample.csv", index=False)
    result = scaffold(
        root / "churn.json", sample=root / "sample.csv", target="y", output=root / "model"
    )
    return result.directory


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    with _machine_lock():
        _install_podman()
        _bootstrap_base()
        _choose_runtime()  # podman's default, or the project's runc configuration
        _fill_wheelhouse()
        _fill_extras_wheelhouse()
    model_dir = _scaffold_xgboost(tmp_path_factory.mktemp("build") / "churn")
    tag = uuid.uuid4().hex[:12]
    image = f"localhost/fastinfer-build-test:{tag}"
    command = [
        sys.executable, "-m", "fastinfer", "build", str(model_dir), "--tag", image,
        "--engine", "podman", "--base-image", BASE_IMAGE,
        "--offline-wheels", str(WHEELHOUSE), "--offline-wheels", str(EXTRAS_WHEELHOUSE),
    ]  # fmt: skip
    env = {**_podman_env(), "PYTHONPATH": str(REPO / "src")}
    result = subprocess.run(
        command, env=env, cwd=REPO, capture_output=True, text=True, timeout=900, check=False
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    assert "runtime extras: xgboost-cpu" in result.stdout
    name = f"fastinfer-build-test-{tag}"
    port, health_port = free_port(), free_port()
    container = Container(
        name, image, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{health_port}", "unknown"
    )
    try:
        podman(
            "run", "--detach", "--name", name,
            "--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp",
            "--user", f"{UID}:{UID}", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges",
            "--publish", f"127.0.0.1:{port}:8000", "--publish", f"127.0.0.1:{health_port}:8001",
            image,
        )  # fmt: skip
        _wait_ready(container)
        yield container
    finally:
        podman("rm", "--force", "--time", "0", name, check=False)
        podman("rmi", "--force", image, check=False)


def test_built_image_predicts_the_scaffolded_xgboost_model(built: Container) -> None:
    listed = httpx.get(f"{built.url}/v1/models", timeout=5).json()
    assert "churn" in json.dumps(listed)
    spec = yaml.safe_load(podman("exec", built.name, "cat", "/models/churn/1/model.yaml").stdout)
    response = httpx.post(
        f"{built.url}/v1/models/churn/predict", json={"inputs": [spec["example"]]}, timeout=10
    )
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["label"] == str(spec["expected_example_output"])


def test_built_image_is_hardened_and_small(built: Container) -> None:
    inspected = json.loads(podman("image", "inspect", built.image).stdout)[0]
    config = inspected["Config"]
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["fastinfer", "serve"]
    assert config["Cmd"] == ["/models/churn/1"]
    assert inspected["Healthcheck"]["Test"][:2] == ["CMD", "python3"]
    checked = podman("healthcheck", "run", built.name, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    probe = (
        "import importlib.util as u, os, pathlib\n"
        "print(u.find_spec('xgboost') is not None, u.find_spec('pip') is None,"
        " pathlib.Path('/app/examples').exists(), os.getuid())"
    )
    shown = podman("exec", built.name, "python3", "-c", probe).stdout.split()
    assert shown == ["True", "True", "False", str(UID)]
    size_mb = inspected["Size"] / 1e6
    print(f"\nfastinfer build image size: {size_mb:.0f} MB")  # the report reads this (-s)
    assert size_mb < 679  # deploy/Dockerfile's image was 679 MB, without XGBoost
