"""Loads, switches and retires model versions in one server process, in step with the others.

Every change goes the same way, whether it comes from startup, the admin API, the v2
repository extension or repository polling:

1. load every version the new state adds (in a thread; the old versions keep serving),
2. switch: install the new set in one synchronous step on the event loop,
3. retire: wait until no request holds a retired version, then stop its engine.

A change made through this process must load here first; if any version fails (bad sha256,
corrupt file, failing self-test) nothing switches, the state is not published, and the
caller gets the reasons. Otherwise the state is published on the control board and the
change returns once every live server process has applied it.

What the repository's folders ask for (scanning, the version policy, polling) is worked out in
`sync.py`; this module only applies it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from datetime import UTC, datetime
from typing import Any

from fastinfer.config import Settings
from fastinfer.engine import Engine
from fastinfer.model.spec import ModelConfigError
from fastinfer.observability.logging import get_logger
from fastinfer.repository.changes import ChangeRefused, ChangeResult, Mutation
from fastinfer.repository.control import ControlBoard
from fastinfer.repository.layout import VersionPolicy
from fastinfer.repository.registry import ModelRegistry
from fastinfer.repository.served import ModelState, ServedModel
from fastinfer.repository.state import DesiredState, ModelEntry, Unloaded, VersionSource
from fastinfer.repository.sync import RepositorySync

log = get_logger("fastinfer.repository")
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
        self.applied = 0  # generation this process serves
        self.started = False
        self._reconcile_lock = asyncio.Lock()
        self._change_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self.repository = settings.model_repository
        self._repository_sync = RepositorySync(
            self.repository,
            VersionPolicy.parse(settings.version_policy),
            self.change,
            stage=settings.new_versions == "stage",
        )

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
        failures = await self._reconcile(state, strict=False)
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

    def _spawn(self, coroutine: Any, name: str) -> None:
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
            failures = await self._reconcile(state, strict=False)
            self.control.acknowledge(self.slot, state.generation, _summary(failures))

    # -- applying a state --------------------------------------------------------------------

    async def _reconcile(self, state: DesiredState, *, strict: bool) -> dict[str, str]:
        """Load what `state` adds, switch, retire; failures by `name/version`.

        strict: switch nothing if anything fails (the change came through this process).
        """
        async with self._reconcile_lock:
            candidates: list[ServedModel] = []
            failures: dict[str, str] = {}
            for name, entry in state.models.items():
                for version, source in entry.versions.items():
                    current = self.registry.resolve(name, version)
                    if (
                        current is not None
                        and current.source == source
                        and (current.serving or current.state is ModelState.FAILED)
                    ):
                        continue  # as wanted already (a failed one is retried by a reload)
                    try:
                        candidate = self.registry.candidate(name, version, source)
                    except (ModelConfigError, OSError) as exc:
                        failures[f"{name}/{version}"] = str(exc)
                        self.registry.failures[(name, version)] = str(exc)
                        continue
                    candidates.append(candidate)
            for candidate in candidates:
                await asyncio.to_thread(self.registry.load, candidate)
                if candidate.ready:
                    self._attach(candidate)
                else:
                    failures[f"{candidate.name}/{candidate.version}"] = candidate.reason or "failed"
            if strict and failures:
                for candidate in candidates:
                    if not candidate.serving:
                        continue
                    if self.registry.resolve(candidate.name, candidate.version) is candidate:
                        continue  # already serving (loaded in place at startup)
                    await self._detach(candidate)
                return failures
            retired = self.registry.install(state, candidates)
            self.applied = state.generation
            for model in retired:
                self._spawn(self._retire(model), f"retire-{model.label}")
            if candidates or retired:
                log.info(
                    "models_changed",
                    generation=state.generation,
                    loaded=[c.label for c in candidates if c.ready],
                    retired=[m.label for m in retired],
                    failed=failures or None,
                    defaults=self.registry.default_versions(),
                )
            return failures

    def _attach(self, model: ServedModel) -> None:
        """Give a loaded version its queue, batcher and workers: it can serve from now on."""
        assert model.runtime is not None and model.schema is not None  # a ready model has both
        model.engine = self.engine.attach(
            model.label,
            model.runtime,
            model.schema.columns,
            model.config.batching,
            model_name=model.name,
        )

    async def _detach(self, model: ServedModel) -> None:
        engine, model.engine = model.engine, None
        if engine is not None:
            await self.engine.detach(model.label, engine)

    async def _retire(self, model: ServedModel) -> None:
        """Stop a version once the requests that chose it are answered."""
        deadline = time.monotonic() + self.settings.drain_timeout_s
        while model.in_flight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await self._detach(model)
        model.runtime = None  # let the memory go
        model.state, model.reason = ModelState.LOADING, "retired"

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
                failures = await self._reconcile(wanted, strict=True)
                if failures:
                    raise ChangeRefused(
                        422,
                        "load_failed",
                        "nothing changed: "
                        + "; ".join(f"{key}: {why}" for key, why in failures.items()),
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
        if stage is None:
            stage = self.settings.new_versions == "stage"

        def mutate(state: DesiredState) -> DesiredState:
            entry = state.models.get(name, ModelEntry())
            existing = entry.versions.get(version)
            records = dict(state.held(name))
            record = records.pop(version, None)
            if existing is not None:
                source = existing.model_copy(update={"revision": existing.revision + 1})
            elif record is not None:
                source = record.source_back()
            else:
                source = self._repository_sync.source(name, version)
            pinned = entry.pinned
            if pinned is None and entry.split is None and record is not None and record.pinned:
                pinned = version  # unloaded with its model while pinned: pinned again
            versions = {**entry.versions, version: source}
            staged = entry.staged
            if stage and existing is None and entry.versions and version not in staged:
                staged = (*staged, version)
            loaded = entry.model_copy(
                update={"versions": versions, "pinned": pinned, "staged": staged}
            )
            return _with_entry(state, name, loaded).with_unloaded(name, records)

        return await self.change(mutate)

    async def load_model(self, name: str) -> ChangeResult:
        """Load a model's versions from the repository by the version policy (v2 `load`); a
        model from elsewhere that an operator unloaded: its versions from where they came."""
        if self._repository_sync.has(name) or not self.control.read().held(name):
            return await self._repository_sync.load_model(name)

        def mutate(state: DesiredState) -> DesiredState:
            records = state.held(name)
            if not records:  # loaded back meanwhile, through another process
                return state
            entry = state.models.get(name, ModelEntry())
            versions = {**entry.versions, **{v: r.source_back() for v, r in records.items()}}
            pinned = entry.pinned or next((v for v, r in records.items() if r.pinned), None)
            if entry.split is not None:
                pinned = entry.pinned  # a split set meanwhile wins, as a pin would
            back_entry = entry.model_copy(update={"versions": versions, "pinned": pinned})
            back = _with_entry(state, name, back_entry)
            return back.with_unloaded(name, {})

        return await self.change(mutate)

    async def sync(self) -> ChangeResult:
        """Bring the repository's models in line with its folders (the poller's step)."""
        return await self._repository_sync.sync()

    async def reload(self, name: str, version: str) -> ChangeResult:
        """Re-read a loaded version's files and swap it in."""

        def mutate(state: DesiredState) -> DesiredState:
            entry = _entry(state, name)
            existing = _version(entry, name, version)
            bumped = existing.model_copy(update={"revision": existing.revision + 1})
            versions = {**entry.versions, version: bumped}
            return _with_entry(state, name, entry.model_copy(update={"versions": versions}))

        return await self.change(mutate)

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

        def mutate(state: DesiredState) -> DesiredState:
            entry = _entry(state, name)
            if version is not None:
                _version(entry, name, version)
            gone = list(entry.versions) if version is None else [version]
            versions = {v: s for v, s in entry.versions.items() if v not in gone}
            if versions and entry.pinned in gone:
                raise ChangeRefused(
                    409,
                    "version_pinned",
                    f"version {entry.pinned!r} is the pinned default of model {name!r}: "
                    f"unloading it would send its unversioned requests to another version; "
                    f"pin another version or unpin (PUT /admin/models/{name}/default) first",
                    {"pinned": entry.pinned},
                )
            split = entry.split or {}
            if versions and any(v in split for v in gone):
                raise ChangeRefused(
                    409,
                    "version_in_split",
                    f"the default of model {name!r} is split between versions "
                    f"{sorted(split)}: unloading one would move its share without anyone "
                    f"choosing where; set another default (PUT /admin/models/{name}/default) "
                    f"first",
                    {"split": split},
                )
            records = {**state.held(name)}
            for v in gone:
                record = self._unloaded(name, v, entry.versions[v], by, at)
                records[v] = record.model_copy(update={"pinned": v == entry.pinned})
            if not versions:  # the last version: the model goes (a model with none is unready)
                models = {k: e for k, e in state.models.items() if k != name}
                return state.model_copy(update={"models": models}).with_unloaded(name, records)
            return _with_entry(state, name, entry.kept(versions)).with_unloaded(name, records)

        return await self.change(mutate)

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
        if split is not None and (not split or any(w <= 0 for w in split.values())):
            raise ChangeRefused(
                422,
                "invalid_split",
                "a split names one or more versions, each with a positive integer weight",
                {"split": split},
            )

        def mutate(state: DesiredState) -> DesiredState:
            entry = _entry(state, name)
            for chosen in [version] if version is not None else list(split or ()):
                _version(entry, name, chosen)
                self._ready(name, chosen)
            # The operator chose the pin now: a version unloaded while pinned no longer claims it.
            records = {
                v: r.model_copy(update={"pinned": False}) for v, r in state.held(name).items()
            }
            chosen_entry = entry.defaulted(version, dict(split) if split is not None else None)
            return _with_entry(state, name, chosen_entry).with_unloaded(name, records)

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


def _entry(state: DesiredState, name: str) -> ModelEntry:
    entry = state.models.get(name)
    if entry is None:
        raise ChangeRefused(
            404, "model_not_found", f"no model named {name!r}", {"available": sorted(state.models)}
        )
    return entry


def _version(entry: ModelEntry, name: str, version: str) -> VersionSource:
    source = entry.versions.get(version)
    if source is None:
        raise ChangeRefused(
            404,
            "version_not_found",
            f"model {name!r} has no loaded version {version!r}",
            {"loaded": sorted(entry.versions)},
        )
    return source


def _with_entry(state: DesiredState, name: str, entry: ModelEntry) -> DesiredState:
    return state.model_copy(update={"models": {**state.models, name: entry}})


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
