"""Model names and versions → loaded runtimes, with the lifecycle each version goes through.

Loading (its steps in `loading.py`) verifies the artefact's pin, deserialises it, builds the row
schema and runs a self-test prediction on the example row; only a model that passed all of that
is ready. A failed step is recorded on the version (state, reason), never raised.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from fastinfer.model.schema import InputLimits
from fastinfer.model.spec import (
    ArtefactSpec,
    ModelConfig,
    ModelConfigError,
    ModelDirectory,
    check_model_name,
)
from fastinfer.observability.logging import get_logger
from fastinfer.repository.loading import VersionLoader
from fastinfer.repository.served import ModelState, ModelVersions, ServedModel
from fastinfer.repository.state import (
    DesiredState,
    ModelEntry,
    Unloaded,
    VersionSource,
    source_of,
)
from fastinfer.runtimes.detect import HEAD_BYTES, detect_runtime

log = get_logger("fastinfer.registry")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def bare_artefact(name: str, path: Path, sha256: str | None = None) -> ModelDirectory:
    """A model directory for a lone artefact given on the command line (`--model NAME=PATH`).

    The runtime comes from the file (`detect_runtime`: extension and content, as `fastinfer
    init` decides it); the output kind from the artefact once it is loaded (`open_as`).
    """
    check_model_name(name)
    path = path.resolve()
    if not path.is_file():
        raise ModelConfigError(f"{path}: no such file")
    with path.open("rb") as handle:
        runtime = detect_runtime(path, handle.read(HEAD_BYTES))
    config = ModelConfig(
        name=name,
        version="unversioned",
        runtime=runtime,
        artefact=ArtefactSpec(path=path.name, sha256=sha256),
    )
    return ModelDirectory(root=path.parent, config=config, bare=True)


def parse_model_option(option: str) -> ModelDirectory:
    """`NAME=PATH` or `NAME=PATH#sha256:HEX` → a bare-artefact model directory."""
    name, sep, rest = option.partition("=")
    if not sep or not name or not rest:
        raise ModelConfigError(f"--model {option!r}: expected NAME=PATH or NAME=PATH#sha256:HEX")
    path_text, hash_sep, pin = rest.rpartition("#")
    if not hash_sep or Path(rest).is_file():
        return _bare_option(option, name, Path(rest), None)
    scheme, _, digest = pin.partition(":")
    if scheme.lower() != "sha256" or not _SHA256.fullmatch(digest):
        raise ModelConfigError(
            f"--model {option!r}: the pin must be #sha256: and 64 hexadecimal characters "
            f"(got {pin!r}, {len(digest)} characters after the colon)"
        )
    return _bare_option(option, name, Path(path_text), digest.lower())


def _bare_option(option: str, name: str, path: Path, sha256: str | None) -> ModelDirectory:
    try:
        return bare_artefact(name, path, sha256)
    except ModelConfigError as exc:
        raise ModelConfigError(f"--model {option!r}: {exc}") from None


class ModelRegistry:
    """The versions this process serves, by name, and the lifecycle each goes through.

    The set of versions only changes in `install`, synchronously on the event loop, so a
    request sees either the old set or the new one, never a mix.
    """

    def __init__(
        self,
        directories: list[ModelDirectory],
        *,
        max_rows: int,
        trust_unpinned: bool,
        pins: dict[str, str] | None = None,
        limits: InputLimits | None = None,
    ) -> None:
        self._loader = VersionLoader(
            max_rows=max_rows, limits=limits or InputLimits(), trust_unpinned=trust_unpinned
        )
        self._models: dict[str, ModelVersions] = {}
        self.changes = 0  # bumped on every install (documents built from the registry go stale)
        self.failures: dict[tuple[str, str], str] = {}  # the last failed load of each version
        # What operators unloaded (name → version → record), from the state last installed:
        # every process can show it (`/v1/models`, the v2 index), whichever took the unload.
        self.unloaded: dict[str, dict[str, Unloaded]] = {}
        seen: dict[tuple[str, str], Path] = {}
        for directory in directories:
            key = (directory.config.name, directory.config.version)
            if key in seen:
                raise ModelConfigError(
                    f"model {key[0]!r} version {key[1]!r} is given by both {seen[key]} and "
                    f"{directory.root}"
                )
            seen[key] = directory.root
            group = self._models.setdefault(key[0], ModelVersions(key[0]))
            group.versions[key[1]] = ServedModel(
                directory=directory, source=source_of(directory, bare=directory.bare)
            )
            group.changes += 1
        for name, version in (pins or {}).items():
            pinned = self._models.get(name)
            if pinned is None or version not in pinned.versions:
                raise ModelConfigError(f"default version {name}={version}: no such model version")
            pinned.pinned = version

    def __iter__(self) -> Iterator[ServedModel]:
        """Every version of every model."""
        for group in list(self._models.values()):
            yield from group.ordered()

    def __len__(self) -> int:
        return sum(len(g.versions) for g in self._models.values())

    def names(self) -> list[str]:
        return sorted(self._models)

    def get(self, name: str) -> ModelVersions | None:
        return self._models.get(name)

    def resolve(self, name: str, version: str | None = None) -> ServedModel | None:
        """A version by name, or the model's default; None if there is no such version."""
        group = self._models.get(name)
        if group is None:
            return None
        if version is None:
            return group.default() or (group.ordered()[-1] if group.versions else None)
        return group.versions.get(version)

    def default_versions(self) -> dict[str, str | None]:
        """Model name → the version that answers unversioned requests (None while none serves;
        with a split, its heaviest version: `splits` has the weights)."""
        return {name: self._models[name].default_version for name in self.names()}

    def splits(self) -> dict[str, dict[str, int]]:
        """Model name → its default's split by weight, for the models whose default is split."""
        return {name: dict(g.split) for name, g in sorted(self._models.items()) if g.split}

    def not_ready(self) -> dict[str, str]:
        """Model name → why it has no version to answer with; empty when every model has one."""
        problems = {}
        for name, group in self._models.items():
            if group.default() is not None:
                continue
            newest = group.ordered()[-1] if group.versions else None
            problems[name] = (
                "no version loaded"
                if newest is None
                else (newest.reason or "starting")
                if newest.state is not ModelState.FAILED
                else f"failed: {newest.reason}"
            )
        return problems

    def snapshot(self, generation: int = 1) -> DesiredState:
        """The desired state that describes what this registry holds."""
        return DesiredState(
            generation=generation,
            models={
                name: ModelEntry(
                    versions={v: m.source for v, m in group.versions.items()},
                    pinned=group.pinned,
                    split=group.split,
                    staged=group.staged,
                )
                for name, group in self._models.items()
            },
        )

    def candidate(self, name: str, version: str, source: VersionSource) -> ServedModel:
        """A version as `source` describes it, not yet loaded nor installed."""
        current = self.resolve(name, version)
        if (
            current is not None
            and current.source == source
            and current.state is ModelState.LOADING
            and not current.serving
        ):
            return current  # prepared before fork, or not loaded yet: load this one in place
        return ServedModel(directory=source.directory(name, version), source=source)

    def install(self, state: DesiredState, loaded: list[ServedModel]) -> list[ServedModel]:
        """Make the registry hold `state`, using freshly `loaded` versions; the retired ones.

        A fresh version that failed replaces nothing that works: the old one keeps serving.
        """
        fresh = {(m.name, m.version): m for m in loaded}
        retired: list[ServedModel] = []
        models: dict[str, ModelVersions] = {}
        for name, entry in state.models.items():
            group = self._models.get(name) or ModelVersions(name)
            versions: dict[str, ServedModel] = {}
            for version in entry.versions:
                current = group.versions.get(version)
                new = fresh.get((name, version))
                if new is not None and (new.ready or current is None or not current.ready):
                    versions[version] = new
                    if current is not None and current is not new:
                        retired.append(current)
                elif current is not None:
                    versions[version] = current
            retired += [m for v, m in group.versions.items() if v not in entry.versions]
            group.versions, group.pinned = versions, entry.pinned
            group.split, group.staged = entry.split, entry.staged
            group.changes += 1
            models[name] = group
        for name, group in self._models.items():
            if name not in state.models:
                retired += list(group.versions.values())
        self._models = models
        self.unloaded = state.unloaded
        self.changes += 1
        return retired

    def load_all(self) -> None:
        for model in self:
            self.load(model)

    def prepare_all(self) -> None:
        """Read, verify and deserialise every model, and build those whose runtime allows it
        (`Runtime.builds_before_fork`): done before forking, the workers share one copy."""
        for model in self:
            if self._guarded(model, self._loader.prepare):
                self._guarded(model, self._loader.build_before_fork)

    def load(self, model: ServedModel) -> None:
        """Prepare (if not yet) and activate one model; failures are recorded, never raised."""
        started = time.perf_counter()
        built_before = model.build_seconds if model.built else 0.0  # by the supervisor
        loader = self._loader
        if not self._guarded(model, loader.prepare) or not self._guarded(model, loader.activate):
            self.failures[(model.name, model.version)] = model.reason or "failed"
            return
        self.failures.pop((model.name, model.version), None)
        model.load_seconds = round(time.perf_counter() - started + built_before, 4)
        model.loaded_at = datetime.now(UTC)
        model.state, model.reason = ModelState.READY, None
        log.info(
            "model_ready",
            model=model.name,
            version=model.version,
            sha256=model.sha256,
            load_seconds=model.load_seconds,
            self_test=model.self_test,
        )

    def _guarded(self, model: ServedModel, step: Callable[[ServedModel], None]) -> bool:
        if model.state is ModelState.FAILED:
            return False
        try:
            step(model)
        except Exception as exc:
            model.state, model.reason = ModelState.FAILED, f"{type(exc).__name__}: {exc}"
            log.error(
                "model_load_failed", model=model.name, version=model.version, error=model.reason
            )
            return False
        return True
