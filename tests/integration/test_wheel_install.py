"""fastinfer installed into someone else's environment, as the README's install section says:
the wheel built from a copy of the sources (`make dist` builds it the same way), a clean venv with
the locked runtime dependencies (`requirements/runtime.lock`, hash-checked) and the wheel without
dependencies; then that venv's `fastinfer serve` answers a prediction for an example copied out
of the checkout, so nothing resolves to the sources under src/.

Needs a package index (PyPI) for the lock and the build backend, as `make venv` does. uv (which
`make venv` installs from requirements/bootstrap.lock) builds and installs when it is beside this
Python; otherwise pip does (slower, same lock)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx2 as httpx
import pytest
import yaml

from tests.conftest import REPO, TITANIC
from tests.integration.server import running_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

EXTRAS = {"otel", "postgres", "xgboost", "lightgbm", "torch"}  # the README names them


def _uv() -> str | None:
    beside = Path(sys.executable).parent / "uv"
    return str(beside) if beside.is_file() else shutil.which("uv")


def _run(command: list[str], **kwargs: object) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    assert result.returncode == 0, f"{command}: {result.returncode}\n{result.stdout}{result.stderr}"


def _clean_env() -> dict[str, str]:
    """No PYTHONPATH (the tests run with src/ on it) and no virtualenv of ours."""
    return {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}


def _build_wheel(out: Path, scratch: Path) -> Path:
    """From a copy of what the sdist holds, so the build leaves nothing in the checkout."""
    source = scratch / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "MANIFEST.in"):
        shutil.copy2(REPO / name, source / name)
    for folder in ("src", "requirements"):
        caches = shutil.ignore_patterns("__pycache__")
        shutil.copytree(REPO / folder, source / folder, ignore=caches)
    uv = _uv()
    if uv is not None:  # as `make dist`: the sdist, then the wheel built from it
        _run([uv, "build", "--quiet", "--system-certs", "--out-dir", str(out), str(source)])
        assert len(list(out.glob("fastinfer-*.tar.gz"))) == 1
    else:
        _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), "."],
             cwd=source)  # fmt: skip
    wheels = list(out.glob("fastinfer-*-py3-none-any.whl"))
    assert len(wheels) == 1, list(out.iterdir())
    return wheels[0]


def _install(venv: Path, wheel: Path) -> None:
    python = str(venv / "bin" / "python")
    lock = str(REPO / "requirements" / "runtime.lock")
    uv = _uv()
    if uv is not None:
        install = [uv, "pip", "install", "--quiet", "--system-certs", "--python", python]
    else:
        install = [python, "-m", "pip", "install", "--quiet"]
    _run([*install, "--require-hashes", "-r", lock], env=_clean_env(), timeout=600)
    _run([*install, "--no-deps", str(wheel)], env=_clean_env(), timeout=120)
    _run([python, "-m", "pip", "check"], env=_clean_env())  # the lock covers the wheel's needs


def test_the_built_wheel_installs_into_a_clean_venv_and_serves_an_example(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path / "dist", tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = next(name for name in names if name.endswith(".dist-info/METADATA"))
        lines = archive.read(metadata).decode().splitlines()
        entry_points = next(name for name in names if name.endswith("entry_points.txt"))
        assert "fastinfer = fastinfer.cli:main" in archive.read(entry_points).decode()
    assert "fastinfer/py.typed" in names
    assert not [name for name in names if name.startswith(("tests/", "examples/"))]
    extras = {line.split(":", 1)[1].strip() for line in lines if line.startswith("Provides-Extra:")}
    assert extras >= EXTRAS, extras

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    _install(venv, wheel)
    elsewhere = tmp_path / "project"
    shutil.copytree(TITANIC, elsewhere / "titanic", ignore=shutil.ignore_patterns("__pycache__"))
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import fastinfer; print(fastinfer.__file__)"],
        capture_output=True, text=True, check=True, env=_clean_env(), cwd=elsewhere,
    )  # fmt: skip
    assert where.stdout.startswith(str(venv)), where.stdout  # the wheel's copy, not src/

    spec = yaml.safe_load((TITANIC / "model.yaml").read_text())
    with running_server(
        ["--workers", "1", "titanic"],
        tmp_path / "server.log",
        env={"PYTHONPATH": ""},  # an empty PYTHONPATH is ignored: not src/
        fastinfer=[str(venv / "bin" / "fastinfer")],
        cwd=elsewhere,
    ) as server:
        url = f"{server.url}/v1/models/titanic/predict"
        response = httpx.post(url, json={"inputs": [spec["example"]]}, timeout=30)
        assert response.status_code == 200, response.text
        assert response.json()["predictions"][0]["label"] == spec["expected_example_output"]
        assert httpx.get(f"{server.url}/docs", timeout=10).status_code == 200
