"""The model repository on disk: `<root>/<name>/<version>/model.yaml`.

Versions sort the way people number them (`1.10` after `1.9`, `10` after `9`), so "the newest"
means what a release process means by it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from fastinfer.model.spec import (
    CONFIG_FILENAME,
    ModelConfigError,
    ModelDirectory,
    load_model_directory,
)
from fastinfer.observability.logging import get_logger

log = get_logger("fastinfer.repository")

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")
_POLICY = re.compile(r"^(all|latest(?::([1-9][0-9]*))?)$")


def version_key(version: str) -> tuple[int, Any]:
    """Sort key: PEP 440-style versions (and plain integers) in numeric order, after any
    version string that does not parse, which sort among themselves alphabetically."""
    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, version)


def newest(versions: Iterable[str]) -> str | None:
    return max(versions, key=version_key, default=None)


@dataclass(frozen=True)
class VersionPolicy:
    """Which versions found in the repository get loaded: all, or the newest N."""

    latest: int | None = None

    @classmethod
    def parse(cls, text: str) -> VersionPolicy:
        match = _POLICY.match(text.strip())
        if match is None:
            raise ValueError(f"version policy {text!r}: expected 'all', 'latest' or 'latest:N'")
        if match.group(1) == "all":
            return cls(None)
        return cls(int(match.group(2) or 1))

    def select(self, versions: Iterable[str]) -> list[str]:
        ordered = sorted(versions, key=version_key)
        return ordered if self.latest is None else ordered[-self.latest :]


def valid_name(name: str) -> bool:
    """Whether `name` can be a model folder: no `/`, no `..`, nothing hidden."""
    return _NAME.match(name) is not None


def valid_version(version: str) -> bool:
    return _VERSION.match(version) is not None


def inside(root: Path, path: Path) -> bool:
    """Whether `path`, symlinks resolved, lies in `root` (a link out of the repository is not
    part of it, whatever its name)."""
    return path.resolve().is_relative_to(root.resolve())


def scan_repository(root: Path) -> dict[str, dict[str, Path]]:
    """Model name → version → directory, for every `<name>/<version>/model.yaml` under root.

    Folders that do not look like a model or a version (hidden, bad names, no config) are
    skipped, so editors' and tools' files in the repository do no harm; so are symlinks that
    lead out of the repository.
    """
    found: dict[str, dict[str, Path]] = {}
    if not root.is_dir():
        return found
    for model_dir in sorted(root.iterdir()):
        if not model_dir.is_dir() or not _NAME.match(model_dir.name):
            continue
        versions = {
            version_dir.name: version_dir.resolve()
            for version_dir in sorted(model_dir.iterdir())
            if version_dir.is_dir()
            and _VERSION.match(version_dir.name)
            and (version_dir / CONFIG_FILENAME).is_file()
            and inside(root, version_dir)
        }
        if versions:
            found[model_dir.name] = versions
    return found


def fingerprint(directory: Path) -> tuple[tuple[str, int, int], ...]:
    """What changes when a version's files change: name, size and mtime of each file in it."""
    entries = []
    for path in sorted(directory.iterdir()):
        if path.is_file():
            stat = path.stat()
            entries.append((path.name, stat.st_size, stat.st_mtime_ns))
    return tuple(entries)


def repository_directories(root: Path, policy: VersionPolicy) -> list[ModelDirectory]:
    """The model directories to serve from a repository at startup, by the version policy.

    A version whose config cannot be read is logged and skipped, so one bad folder does not
    keep the rest of the repository from serving.
    """
    directories = []
    for name, versions in scan_repository(root).items():
        for version in policy.select(versions):
            try:
                directories.append(
                    load_model_directory(versions[version], name=name, version=version)
                )
            except ModelConfigError as exc:
                log.error("repository_version_skipped", model=name, version=version, error=str(exc))
    return directories
