"""Loads, switches and retires model versions in one server process, in step with the others.

Every change goes the same way, whether it comes from startup, the admin API, the v2
repository extension or repository polling: this process loads what it adds, switches and
retires what it drops (`reconcile.Reconciler`).

A change made through this process must load here first; if any version fails (bad sha256,
corrupt file, failing self-test) nothing switches, the state is not published, and the
caller gets the reasons. Otherwise the state is published on the control board and the
change returns once every live server process has applied it.

What each admin operation does to the state is in `edits.py`; what the repository's folders
ask for (scanning, the version policy, polling) is worked out in `sync.py`; this module only
applies them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any

from fastinfer.config import Settings
from fastinfer.engine import Engine
from fastinfer.repository import edits
from fastinfer.repository.changes import ChangeRefused, ChangeResult, Mutation
from fastinfer.repository.control import ControlBoard
from fastinfer.repository.layout import VersionPolicy
from fastinfer.repository.reconcile import Reconciler
from fastinfer.repository.registry import ModelRegistry
from fastinfer.repository.state import DesiredState, Unloaded, VersionSource
from fastinfer.repository.sync import RepositorySync

# How soon a change made through another process is applied here (each check wakes an idle loop).
_WATCH_S = 0.2
_ACK_POLL_S = 0.02

# ChangeRefused and ChangeResult live in `changes` (the sync raises and returns them too); the
# admin and v2 APIs import them from here.
__all__ = ["ChangeRefused", "ChangeResult", "ModelManager", "Mutation"]


class ModelManager:
    def __init__(
        self,
        registry: ModelRegistry,
        engine: Engine,
        settings: Settings,
        control: ControlBoard,
        slot: int,
    ) -> None:
        self.registry = registry
        self.engine = engine
        self.settings = settings
        self.control = control
        self.slot = slot
        self.started = False
        self._change_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._reconciler = Reconciler(registry, engine, settings.drain_timeout_s, self._spawn)
        self.repository = settings.model_repository
        self._repository_sync = RepositorySync(
            self.repository,
            VersionPolicy.parse(settings.version_policy),
            self.change,
            stage=settings.new_versions == "stage",
        )

    @property
    def applied(self) -> int:
        """The generation this process serves."""
        return self._reconciler.applied

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Converge on the published state (or publish this registry's), then follow changes."""
        state = self.control.read()
        if state.generation == 0:
            state = self.registry.snapshot(generation=1)
            if self.control.acquire(timeout=0):
                try:
                    if self.control.generation() == 0:
                        self.control.publish(state)
                finally:
                    self.control.release()
            state = self.control.read()
        failures = await self._reconciler.apply(state, strict=False)
        self.control.acknowledge(self.slot, state.generation, _summary(failures))
        self.started = True
        self._spawn(self._watch(), "control-watch")
        if self.repository is not None and self.settings.repository_poll_s and self.slot == 0:
            self._spawn(
                self._repository_sync.poll(self.settings.repository_poll_s), "repository-poll"
            )

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self) -> None:
        """Follow changes published by other processes."""
        while True:
            await asyncio.sleep(_WATCH_S)
            if self.control.generation() <= self.applied:
                continue
            state = self.control.read()
            if state.generation <= self.applied:
                continue
            failures = await self._reconciler.apply(state, strict=False)
            self.control.acknowledge(self.slot, state.generation, _summary(failures))

    # -- changes -----------------------------------------------------------------------------

    async def change(self, mutate: Mutation) -> ChangeResult:
        """Apply `mutate` to the published state, here first and then in every process."""
        async with self._change_lock:
            timeout = self.settings.reload_timeout_s
            if not await asyncio.to_thread(self.control.acquire, timeout):
                raise ChangeRefused(409, "busy", "another model change is in progress; retry")
            try:
                current = self.control.read()
                wanted = mutate(current)
                if wanted.same_models(current):
                    return ChangeResult(current.generation, changed=False)
                wanted = wanted.model_copy(update={"generation": current.generation + 1})
                failures = await self._reconciler.apply(wanted, strict=True)
                if failures:
                    raise ChangeRefused(
                        422,
                        "load_failed",
                        "nothing changed: " + _summary(failures),
                        {"failed": failures},
                    )
                self.control.publish(wanted)
                self.control.acknowledge(self.slot, wanted.generation)
                workers = await self._wait_for_workers(wanted.generation, timeout)
                return ChangeResult(wanted.generation, changed=True, workers=workers)
            finally:
                self.control.release()

    async def _wait_for_workers(self, generation: int, timeout: float) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            acks = [a for a in self.control.acknowledgements() if a.pid]
            pending = [a for a in acks if a.generation < generation and _alive(a.pid)]
            if not pending or time.monotonic() > deadline:
                break
            await asyncio.sleep(_ACK_POLL_S)
        return {
            f"worker-{a.index}": (
                "pending" if a.generation < generation else (a.error or "applied")
            )
            for a in acks
        }

    # -- the operations the admin API offers ---------------------------------------------------

    async def load(self, name: str, version: str, *, stage: bool | None = None) -> ChangeResult:
        """Load a version (reloading it if it is loaded already): one an operator unloaded
        from where it came (a model directory given on the command line is in no
        repository), any other from the repository.

        `stage` (default: `FASTINFER_NEW_VERSIONS=stage`): a version new to a model that has
        others arrives staged, so the default stays where it is until it is promoted.
        """
        staged = self.settings.new_versions == "stage" if stage is None else stage

        def mutate(state: DesiredState) -> DesiredState:
            return edits.load_version(
                state, name, version, stage=staged, repository_source=self._repository_sync.source
            )

        return await self.change(mutate)

    async def load_model(self, name: str) -> ChangeResult:
        """Load a model's versions from the repository by the version policy (v2 `load`); a
        model from elsewhere that an operator unloaded: its versions from where they came."""
        if self._repository_sync.has(name) or not self.control.read().held(name):
            return await self._repository_sync.load_model(name)
        return await self.change(lambda state: edits.load_model_back(state, name))

    async def sync(self) -> ChangeResult:
        """Bring the repository's models in line with its folders (the poller's step)."""
        return await self._repository_sync.sync()

    async def reload(self, name: str, version: str) -> ChangeResult:
        """Re-read a loaded version's files and swap it in."""
        return await self.change(lambda state: edits.reload_version(state, name, version))

    async def unload(
        self, name: str, version: str | None = None, *, by: str = "operator"
    ) -> ChangeResult:
        """Unload one version, or every version of the model (the model goes away).

        The unload is recorded in the state (`by` whom, when, the files as they are), so
        polling does not load it back until its files change or an operator loads it.

        The pinned version is not unloaded while other versions would take its unversioned
        requests (409: the operator re-pins or unpins first), nor a version of the default's
        split (409 `version_in_split`: set another default first); unloading the whole model
        keeps the pin in the record, and loading its version back pins it again (a split is
        not kept: the model has no version to split between).
        """
        at = datetime.now(UTC)

        def record(unloaded: str, source: VersionSource) -> Unloaded:
            return self._unloaded(name, unloaded, source, by, at)

        return await self.change(lambda state: edits.unload(state, name, version, record))

    def _unloaded(
        self, name: str, version: str, source: VersionSource, by: str, at: datetime
    ) -> Unloaded:
        """The record of an operator's unload of one version."""
        loaded = self.registry.resolve(name, version)
        return Unloaded(
            source=source,
            runtime=loaded.config.runtime if loaded is not None else source.runtime,
            by=by,
            at=at,
            files=self._repository_sync.files_of(source),
        )

    async def set_default(
        self, name: str, version: str | None, split: dict[str, int] | None = None
    ) -> ChangeResult:
        """Set the default: pin `version` (promote a staged version, or roll back to an older
        one), or `split` unversioned requests between versions by weight (a canary); neither:
        the newest version that is not staged again.

        Only the default changes: every version stays loaded, so a request that holds one is
        answered by it, and the next unversioned request goes where the new default says. The
        versions named must be loaded and ready here (a 404 or 409 otherwise, nothing changed).
        """
        edits.check_split(split)

        def mutate(state: DesiredState) -> DesiredState:
            return edits.set_default(state, name, version, split, self._ready)

        return await self.change(mutate)

    def _ready(self, name: str, version: str) -> None:
        """Refuse a default that could not answer: the version must serve in this process."""
        model = self.registry.resolve(name, version)
        if model is None or not model.serving:
            raise ChangeRefused(
                409,
                "version_not_ready",
                f"model {name!r} version {version!r} is not ready to answer "
                f"({model.reason if model is not None else 'not loaded here'})",
                {"state": model.state.value if model is not None else "absent"},
            )


def _summary(failures: dict[str, str]) -> str:
    return "; ".join(f"{key}: {why}" for key, why in failures.items())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
