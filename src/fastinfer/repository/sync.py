"""Keeps the served models in line with the model repository's folders.

The manager applies a change (load, switch, retire); this module works out which change the
repository asks for. It scans the `<root>/<name>/<version>/` folders, picks each model's versions
by the version policy and sets them in the desired state. Three callers ask for that: polling
(a task in the first server process only), `POST /admin/repository/sync` and the v2
repository `load`. Keeping it apart from the manager
keeps the manager to the one path every change takes, whatever asked for it.

What an operator unloaded stays out of what polling and syncs ask for until its files change:
the operator's decision stands until the operator or the files change it.
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
from fastinfer.repository.state import (
    DesiredState,
    Fingerprint,
    ModelEntry,
    Unloaded,
    VersionSource,
)

log = get_logger("fastinfer.repository")


class RepositorySync:
    """The repository's versions, turned into changes that `change` applies."""

    def __init__(
        self,
        root: Path | None,
        policy: VersionPolicy,
        change: Callable[[Mutation], Awaitable[ChangeResult]],
        *,
        stage: bool = False,
    ) -> None:
        self.root = root  # None: no repository configured; every operation is refused
        self.policy = policy
        self.stage = stage  # FASTINFER_NEW_VERSIONS=stage: new versions arrive staged
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
                f"no model {name!r} version {version!r} in the repository",
                {"available": sorted(found)},
            )
        return VersionSource(path=str(path.resolve()))

    def files_of(self, source: VersionSource) -> Fingerprint | None:
        """A repository version's fingerprint, to tell later whether its files changed; None
        for a version from elsewhere (polling never loads those back)."""
        if self.root is None or source.kind != "directory":
            return None
        path = Path(source.path)
        if not path.is_relative_to(self.root.resolve()):
            return None
        try:
            return fingerprint(path)
        except OSError:
            return None

    def has(self, name: str) -> bool:
        """Whether the repository holds a model of that name (False without a repository)."""
        return self.root is not None and name in scan_repository(self.root)

    async def load_model(self, name: str) -> ChangeResult:
        """Load a model's versions from the repository by the version policy (v2 `load`)."""
        root = self._root()
        found = scan_repository(root).get(name)
        if not found:
            raise ChangeRefused(404, "model_not_found", f"no model {name!r} in the repository")
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
        """`state` with the repository's models set to the policy's versions of `found`.

        A version an operator unloaded stays out while its files are as they were at the
        unload; `only` (an operator's load of that model) brings its versions back. With
        `stage`, a version new to a model that already has versions arrives staged: loaded and
        reachable at its version path, while the default stays where it was.
        """
        root = self._root().resolve()
        models = dict(state.models)
        unloaded = dict(state.unloaded)
        returning: dict[str, dict[str, Unloaded]] = {}  # unloads that end now
        if only is not None:
            returning[only] = unloaded.pop(only, {})
        else:
            for name, records in list(unloaded.items()):
                kept = {v: r for v, r in records.items() if not _files_changed(r, root)}
                returning[name] = {v: r for v, r in records.items() if v not in kept}
                if kept:
                    unloaded[name] = kept
                else:
                    del unloaded[name]
        for name in list(models):
            in_repository = all(
                Path(s.path).is_relative_to(root) for s in models[name].versions.values()
            )
            if in_repository and name not in found and only is None:
                del models[name]
        for name, versions in found.items():
            entry = models.get(name, ModelEntry())
            held = unloaded.get(name, {})
            back = returning.get(name, {})
            sources = {
                v: entry.versions.get(v) or _fresh(versions[v], back.get(v))
                for v in self.policy.select(versions)
                if v not in held
            }
            if not sources:  # every version the policy picks was unloaded by an operator
                models.pop(name, None)
                continue
            wanted = entry.kept(sources)
            if wanted.pinned is None and wanted.split is None:
                # a model unloaded whole gets its pin back with its version
                pinned = next((v for v, r in back.items() if r.pinned and v in sources), None)
                wanted = wanted.model_copy(update={"pinned": pinned})
            if self.stage and entry.versions:
                new = [v for v in sources if v not in entry.versions and v not in wanted.staged]
                wanted = wanted.model_copy(update={"staged": (*wanted.staged, *new)})
            models[name] = wanted
        return state.model_copy(update={"models": models, "unloaded": unloaded})

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


def _files_changed(record: Unloaded, root: Path) -> bool:
    """Whether a repository version an operator unloaded was edited, replaced or removed since
    (then polling may load it again); a version from outside the repository never is."""
    path = Path(record.source.path)
    if record.files is None or not path.is_relative_to(root):
        return False
    try:
        return fingerprint(path) != record.files
    except OSError:
        return True  # gone


def _fresh(path: Path, record: Unloaded | None) -> VersionSource:
    """The source of a version coming (back) from the repository."""
    return VersionSource(path=str(path)) if record is None else record.source_back()
