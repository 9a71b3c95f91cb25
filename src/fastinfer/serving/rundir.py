"""The run directory: state the server processes of one server share (drift windows, the
feedback join index), in memory-backed storage when there is some.

`serve` makes it before forking the workers (they inherit `FASTINFER_RUN_DIR`); a lone
in-process app makes a private one. Nothing in it outlives the server.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

RUN_DIR_ENV = "FASTINFER_RUN_DIR"


def _make() -> Path:
    # Memory-backed; mkdtemp makes a private (0700) folder in it: no predictable shared path.
    shm = Path("/dev/shm")  # noqa: S108  # nosec B108
    base = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="fastinfer-run-", dir=base))


def prepare_run_dir() -> Path | None:
    """Make the directory the worker processes will share and export it; None when the operator
    set `FASTINFER_RUN_DIR` (then it is theirs to remove). Call before forking workers."""
    configured = os.environ.get(RUN_DIR_ENV)
    if configured:
        Path(configured).mkdir(parents=True, exist_ok=True)
        return None
    directory = _make()
    os.environ[RUN_DIR_ENV] = str(directory)
    return directory


def run_dir() -> tuple[Path, bool]:
    """The shared run directory, and whether the caller owns it (made here: remove it after)."""
    configured = os.environ.get(RUN_DIR_ENV)
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        return path, False
    return _make(), True


def remove_run_dir(directory: Path | None) -> None:
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)
