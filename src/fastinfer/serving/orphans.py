"""What a supervisor that dies without cleaning up (kill -9, OOM killer) leaves behind.

Its children must not serve on unsupervised: each asks the kernel for SIGTERM when the
supervisor dies (Linux `PR_SET_PDEATHSIG`), and drains and exits as on any SIGTERM. Its shared
directories in /dev/shm must not pile up: each carries an `owner` file with the supervisor's
pid, and the next `serve` removes the directories whose owner is gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

OWNER_FILE = "owner"
PREFIXES = ("fastinfer-run-", "fastinfer-metrics-")
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> bool:
    """In a child just forked: SIGTERM when `parent_pid` dies. False where the kernel has no
    such request (not Linux); the child then outlives a killed supervisor."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        return False
    if os.getppid() != parent_pid:  # it died before the request was made
        os.kill(os.getpid(), signal.SIGTERM)
    return True


def mark_owner(directory: Path | None) -> None:
    """Record this process (the supervisor) as the owner of a shared directory it made."""
    if directory is not None:
        (directory / OWNER_FILE).write_text(str(os.getpid()), encoding="ascii")


def remove_stale_directories() -> list[Path]:
    """Shared directories left by supervisors that are gone; removed, and returned."""
    removed: list[Path] = []
    for base in {Path("/dev/shm"), Path(tempfile.gettempdir())}:  # noqa: S108  # nosec B108
        with contextlib.suppress(OSError):
            for directory in base.iterdir():
                if directory.name.startswith(PREFIXES) and _owner_gone(directory):
                    shutil.rmtree(directory, ignore_errors=True)
                    removed.append(directory)
    if removed:
        # Imported here: the health process imports this module for `die_with_parent` alone.
        from fastinfer.observability.logging import get_logger

        get_logger("fastinfer.supervisor").info(
            "stale_directories_removed", directories=[str(d) for d in removed]
        )
    return removed


def _owner_gone(directory: Path) -> bool:
    """True only when the directory names its owner and that process is dead (a zombie counts
    as dead; a pid reused by another process keeps the directory: the safe side)."""
    try:
        pid = int((directory / OWNER_FILE).read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return False  # not ours to judge (an operator's, or one made before this rule)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, someone else's
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return False
    return "\nState:\tZ" in status
