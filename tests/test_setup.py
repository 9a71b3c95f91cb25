"""How `make venv` and `make dist` set up and build (the README's set-up section): uv, pinned and
hash-checked, installs the lock; pip installs it where uv cannot. `make -n` prints the recipes
without running them. The real set-up is exercised by `make` in CI and by
tests/integration/test_wheel_install.py."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

BOOTSTRAP = REPO / "requirements" / "bootstrap.lock"


def _dry_run(tmp_path: Path, *args: str) -> str:
    if shutil.which("make") is None:
        pytest.skip("needs make")
    result = subprocess.run(
        ["make", "-n", "-C", str(REPO), *args, f"VENV={tmp_path / 'venv'}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return result.stdout


def test_the_bootstrap_lock_pins_uv_with_a_hash_per_wheel() -> None:
    text = BOOTSTRAP.read_text()
    requirements = [line for line in text.splitlines() if re.match(r"^[a-z]", line)]
    assert len(requirements) == 1 and re.fullmatch(r"uv==\d+\.\d+\.\d+ \\", requirements[0])
    hashes = re.findall(r"--hash=sha256:([0-9a-f]+)", text)
    assert len(hashes) >= 10 and all(len(digest) == 64 for digest in hashes)


def test_make_venv_installs_the_lock_with_uv_and_falls_back_to_pip(tmp_path: Path) -> None:
    recipe = _dry_run(tmp_path, "venv")
    assert "--only-binary=:all: --require-hashes -r requirements/bootstrap.lock" in recipe
    assert (
        "uv pip install --quiet" in recipe and "--require-hashes -r requirements/dev.lock" in recipe
    )
    fallback = recipe.split("else", 1)[1]
    assert "-m pip install --quiet --require-hashes -r requirements/dev.lock" in fallback
    assert '[ "pip" = uv ]' in _dry_run(tmp_path, "venv", "INSTALLER=pip")  # uv is not tried


def test_make_dist_builds_the_sdist_and_the_wheel_into_dist(tmp_path: Path) -> None:
    recipe = _dry_run(tmp_path, "dist")
    assert "uv build --quiet --system-certs --out-dir dist ." in recipe
    assert (REPO / "MANIFEST.in").read_text().count("include requirements/*.lock") == 1
    outputs = ["dist/fastinfer-0.1.0.tar.gz", "build/screenshots/redoc.png"]
    ignored = subprocess.run(
        ["git", "-C", str(REPO), "check-ignore", *outputs], capture_output=True, text=True
    )
    if ignored.returncode == 128:
        pytest.skip("not a git checkout")
    assert ignored.stdout.split() == outputs  # build outputs never show in git status
