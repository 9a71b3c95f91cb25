"""Keeps the served models in line with the model repository's folders.

The manager applies a change (load, switch, retire); this module works out which change the
repository asks for. It scans the `<root>/<name>/<version>/` folders, picks each model's versions
by the version policy and sets them in the desired state. Three callers ask for that: polling
(a task in the first server process only), `POST /admin/repository/sync` and the v2
repository `load`. Keeping it apart from the manager
keeps the manager to the one path every change takes, whatever asked for it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastinfer.observability.logging import get_logger
from fastinfer.repository.changes import ChangeRefused, ChangeResult, Mutation
from fastinfer.repository.layout import (
    VersionPolicy,
    fingerprint,
    inside,
    scan_repository,
    valid_name,
    valid_version,
)
from fastinfer.repository.state import DesiredState, ModelEntry, VersionSource

log = get_logger("fastinfer.repository")


class RepositorySync:
    """The repository's versions, turned into changes that `change` applies."""

    def __init__(
        self,
        root: Path | None,
        policy: VersionPolicy,
        change: Callable[[Mutation], Awaitable[ChangeResult]],
    ) -> None:
        self.root = root  # None: no repository configured; every operation is refused
        self.policy = policy
        self._change = change
        self._bad_versions: dict[tuple[str, str], Any] = {}  # polling skips these until edited

    def _root(self) -> Path:
        if self.root is None:
            raise ChangeRefused(
                409,
                "no_repository",
                "no model repository is configured (set FASTINFER_MODEL_REPOSITORY)",
            )
        return self.root

    def source(self, name: str, version: str) -> VersionSource:
        """Where a version lives in the repository, for a change that loads it.

        The names come from a request: one that is not a plain folder name (`..`, `/`), or a
        folder that links out of the repository, is refused before any file is read.
        """
        root = self._root()
        if not (valid_name(name) and valid_version(version)):
            raise ChangeRefused(
                400,
                "invalid_name",
                "model and version names are plain folder names (letters, digits, _ . - +; "
                "no '/' and not starting with '.')",
            )
        path = root / name / version
        if not inside(root, path) or not (path / "model.yaml").is_file():
            found = scan_repository(root).get(name, {})
            raise ChangeRefused(
                404,
                "version_not_found",
                f"no model {name!r} version {version!r} in the repository {root}",
                {"available": sorted(found)},
            )
        return VersionSource(path=str(path.resolve()))

    async def load_model(self, name: str) -> ChangeResult:
        """Load a model's versions from the repository by the version policy (v2 `load`)."""
        root = self._root()
        found = scan_repository(root).get(name)
        if not found:
            raise ChangeRefused(
                404, "model_not_found", f"no model {name!r} in the repository {root}"
            )
        return await self._change(lambda state: self._synced(state, {name: found}, only=name))

    async def sync(self) -> ChangeResult:
        """Bring the repository's models in line with its folders (the poller's step).

        A version that failed to load is skipped by later syncs until its files change.
        """
        root = self._root()
        found = scan_repository(root)
        for (name, version), print_ in list(self._bad_versions.items()):
            path = found.get(name, {}).get(version)
            if path is not None and fingerprint(path) == print_:
                del found[name][version]
        try:
            return await self._change(lambda state: self._synced(state, found))
        except ChangeRefused as refused:
            if refused.code == "load_failed":
                for key in (refused.details or {}).get("failed", {}):
                    name, _, version = key.partition("/")
                    with contextlib.suppress(OSError):
                        self._bad_versions[(name, version)] = fingerprint(root / name / version)
            raise

    def _synced(
        self, state: DesiredState, found: dict[str, dict[str, Path]], only: str | None = None
    ) -> DesiredState:
        """`state` with the repository's models set to the policy's versions of `found`."""
        root = self._root().resolve()
        models = dict(state.models)
        for name in list(models):
            in_repository = all(
                Path(s.path).is_relative_to(root) for s in models[name].versions.values()
            )
            if in_repository and name not in found and only is None:
                del models[name]
        for name, versions in found.items():
            entry = models.get(name, ModelEntry())
            chosen = self.policy.select(versions)
            sources = {
                v: entry.versions.get(v) or VersionSource(path=str(versions[v])) for v in chosen
            }
            pinned = entry.pinned if entry.pinned in sources else None
            models[name] = ModelEntry(versions=sources, pinned=pinned)
        return state.model_copy(update={"models": models})

    async def poll(self, every: float) -> None:
        """Sync every `every` seconds, for good: failures are logged, not raised."""
        while True:
            await asyncio.sleep(every)
            try:
                await self.sync()
            except ChangeRefused as refused:
                log.error("repository_sync_failed", reason=refused.message)
            except Exception:
                log.exception("repository_poll_failed")
