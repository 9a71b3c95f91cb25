"""Debian packages that integration tests need, installed on first use (as CI does: root, the
Debian registry reachable)."""

from __future__ import annotations

import os
import shutil
import subprocess


def apt_install(package: str) -> None:
    assert os.geteuid() == 0 and shutil.which("apt-get"), f"installing {package} needs root"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", package]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=True)
        subprocess.run(install, env=env, capture_output=True, check=True)
