"""The layering contract (`[tool.importlinter]` in pyproject.toml) holds, and it would catch a
new upward import or cycle: `make lint` runs the same check."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports on the package under `root/src`, with the project's contracts."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(REPO / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root / "src"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "src" / "fastinfer", tmp_path / "src" / "fastinfer")
    return tmp_path


def test_the_package_keeps_its_layers() -> None:
    result = _lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_upward_import_breaks_the_build(package_copy: Path) -> None:
    work = package_copy / "src" / "fastinfer" / "engine" / "work.py"
    work.write_text(work.read_text() + "\nfrom fastinfer.api import service  # noqa\n")
    result = _lint(package_copy)
    assert result.returncode != 0
    assert "fastinfer.engine is not allowed to import fastinfer.api" in result.stdout


def test_a_cycle_inside_a_package_breaks_the_build(package_copy: Path) -> None:
    # api.http is imported by api.v1_infer; importing back closes a circle inside api/.
    http = package_copy / "src" / "fastinfer" / "api" / "http.py"
    http.write_text(http.read_text() + "\nfrom fastinfer.api import v1_infer  # noqa\n")
    result = _lint(package_copy)
    assert result.returncode != 0
    assert "No import cycles" in result.stdout and "BROKEN" in result.stdout
