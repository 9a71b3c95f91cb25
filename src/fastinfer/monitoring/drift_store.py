"""Per-process drift snapshot files, shared by the worker processes of one server.

The worker processes share no memory, and each sees only its share of the traffic. Each writes its
own `drift.DriftWindow.snapshot` here (one writer per file, atomic replace: no locks); any process,
or a separate health process, reads every file of a model version to add them up with
`drift.merge_snapshots`. Kept apart from the window and PSI arithmetic in `drift` because this is
file handling: path safety of user-controlled names, atomic writes, pruning of dead processes.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson


def _safe_name(name: str) -> str:
    """A user-controlled name as one path component: percent-encoded, never "." or ".."."""
    safe = quote(name, safe="")
    if safe in ("", ".", ".."):
        raise ValueError(f"{name!r} cannot be used as a file name")
    return safe


class DriftStore:
    """Per-process snapshot files: `<directory>/<model>/<version>/<pid>.json`."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _folder(self, model: str, version: str) -> Path:
        return self.directory / _safe_name(model) / _safe_name(version)

    def write(self, model: str, version: str, snapshot: dict[str, Any]) -> None:
        """Replace this process's file atomically: readers see the old or the new file, whole."""
        folder = self._folder(model, version)
        folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{os.getpid()}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(orjson.dumps(snapshot))
            Path(temporary).replace(folder / f"{os.getpid()}.json")  # atomic (os.replace)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def read(self, model: str, version: str) -> list[dict[str, Any]]:
        """Every process's snapshot of a model version; unreadable files are skipped."""
        snapshots: list[dict[str, Any]] = []
        for path in sorted(self._folder(model, version).glob("*.json")):
            try:
                snapshot = orjson.loads(path.read_bytes())
            except (OSError, orjson.JSONDecodeError):
                continue  # removed meanwhile, or not ours
            if isinstance(snapshot, dict):
                snapshots.append(snapshot)
        return snapshots

    def prune(self, max_age_s: float) -> None:
        """Remove files not modified for `max_age_s` (dead processes, orphaned temporaries)."""
        cutoff = time.time() - max_age_s
        for path in self.directory.glob("*/*/*"):
            try:
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink(missing_ok=True)
            except OSError:
                continue
