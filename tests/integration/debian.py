"""Real components (Debian packages and tools) that integration tests need.

In CI (`CI=true`, as .ci/run and every CI service set it) a component is installed on first use
(root, apt-get, the Debian registry reachable) and one that cannot be is a failure: never a silent
skip. On a developer's machine a test whose component is missing and cannot be installed (no root,
no apt-get, no registry) is skipped with one line saying what to install, so `make test` reports
what it could not run instead of failing."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def unavailable(what: str) -> NoReturn:
    """`what` is missing: fail in CI, skip (saying what to install) elsewhere."""
    if in_ci():
        pytest.fail(f"CI must run this test: {what}", pytrace=False)
    pytest.skip(what)


def can_install() -> bool:
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def apt_install(package: str, *, needed_for: str = "") -> None:
    """Install a Debian package, or (outside CI) skip the test saying what to install."""
    hint = f"needs {package} ({needed_for})" if needed_for else f"needs {package}"
    if not can_install():
        unavailable(f"{hint}: install it (sudo apt-get install {package}) or run as root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", package]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode == 0:
        return
    subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False)
    result = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        unavailable(f"{hint}: apt-get install {package} failed: {last}")


def require_tool(tool: str, package: str, *, needed_for: str = "") -> str:
    """The path of `tool`, installing Debian's `package` when it is missing."""
    found = shutil.which(tool)
    if found is None:
        apt_install(package, needed_for=needed_for)
        found = shutil.which(tool)
    if found is None:
        unavailable(f"{package} is installed but has no `{tool}` on PATH")
    return found
