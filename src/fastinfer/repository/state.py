"""The desired state: which versions of which models should be loaded, and the default of each.

It is data, shared by every server process (see `control.ControlBoard`); each process loads and
retires versions until what it serves matches. A change is a new state with a higher
generation, so a process that missed changes (a restarted worker) converges in one step.

It also remembers what an operator unloaded (`Unloaded`): repository polling must not load it
back while its files are as they were, a model given on the command line must be loadable
again from where it came, and every process can show who unloaded what.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from fastinfer.model.spec import ArtefactSpec, ModelConfig, ModelDirectory, load_model_directory


class VersionSource(BaseModel):
    """Where one version's files are; `revision` grows on every reload of the same version."""

    model_config = ConfigDict(frozen=True)

    path: str
    revision: int = 0
    kind: Literal["directory", "artefact"] = "directory"
    runtime: str = "sklearn"  # kind "artefact": a bare file given on the command line
    sha256: str | None = None

    def directory(self, name: str, version: str) -> ModelDirectory:
        """Read the version's model directory (its config is re-read on every load)."""
        if self.kind == "artefact":
            path = Path(self.path)
            config = ModelConfig(
                name=name,
                version=version,
                runtime=self.runtime,
                artefact=ArtefactSpec(path=path.name, sha256=self.sha256),
            )
            return ModelDirectory(root=path.parent, config=config, bare=True)
        return load_model_directory(self.path, name=name, version=version)


class ModelEntry(BaseModel):
    """One model's versions and its default: `pinned` (one version), or `split` (versions by
    weight: a canary), or neither (the newest version that is not `staged`).

    `staged`: versions that arrived staged (loaded, self-tested, reachable at their version
    path) and take no unversioned request until promoted (pinned, or put in a split).
    """

    model_config = ConfigDict(frozen=True)

    versions: dict[str, VersionSource] = Field(default_factory=dict)
    pinned: str | None = None
    split: dict[str, int] | None = None
    staged: tuple[str, ...] = ()

    def defaulted(self, pinned: str | None, split: dict[str, int] | None = None) -> ModelEntry:
        """This entry with the default set to `pinned` or `split` (the other cleared); the
        versions chosen are staged no more. A one-version split is that version's pin."""
        if split is not None and len(split) == 1:
            pinned, split = next(iter(split)), None
        chosen = set(split or ()) | ({pinned} if pinned else set())
        staged = tuple(v for v in self.staged if v not in chosen)
        return self.model_copy(update={"pinned": pinned, "split": split, "staged": staged})

    def kept(self, versions: dict[str, VersionSource]) -> ModelEntry:
        """This entry with `versions` only: a pin, split members and staged marks of versions
        that went are dropped (a split keeps the weights of the versions that remain)."""
        pinned = self.pinned if self.pinned in versions else None
        split = {v: w for v, w in (self.split or {}).items() if v in versions} or None
        staged = tuple(v for v in self.staged if v in versions)
        return ModelEntry(versions=versions, pinned=pinned, split=split, staged=staged)


Fingerprint = tuple[tuple[str, int, int], ...]  # `layout.fingerprint`: name, size, mtime


class Unloaded(BaseModel):
    """A version an operator unloaded: it stays out until an operator loads it again, or (a
    repository version) its files change.

    `source` is where it was loaded from, so it loads back from there (a model directory or
    artefact given on the command line is in no repository). `files`: the version folder's
    fingerprint at the unload (None outside the repository). `pinned`: it was the model's
    pinned default when the whole model was unloaded; loading it back pins it again.
    """

    model_config = ConfigDict(frozen=True)

    source: VersionSource
    runtime: str
    by: str
    at: datetime
    files: Fingerprint | None = None
    pinned: bool = False

    def source_back(self) -> VersionSource:
        """Its source, loading back: a new revision, so its engine is not confused with the
        retired one's (which may still be finishing requests)."""
        return self.source.model_copy(update={"revision": self.source.revision + 1})


class DesiredState(BaseModel):
    model_config = ConfigDict(frozen=True)

    generation: int = 0
    models: dict[str, ModelEntry] = Field(default_factory=dict)
    unloaded: dict[str, dict[str, Unloaded]] = Field(default_factory=dict)  # name → version

    def same_models(self, other: DesiredState) -> bool:
        """Whether `other` asks for the same (models, pins and operator unloads) at any
        generation."""
        return self.models == other.models and self.unloaded == other.unloaded

    def held(self, name: str) -> dict[str, Unloaded]:
        """The versions of `name` an operator unloaded (and that have not come back)."""
        return self.unloaded.get(name, {})

    def with_unloaded(self, name: str, records: dict[str, Unloaded]) -> DesiredState:
        """This state with `name`'s operator unloads set to `records` (none: forgotten)."""
        unloaded = {k: v for k, v in self.unloaded.items() if k != name}
        if records:
            unloaded[name] = records
        return self.model_copy(update={"unloaded": unloaded})


def source_of(directory: ModelDirectory, *, bare: bool = False) -> VersionSource:
    if bare:
        artefact = directory.artefact_path
        assert artefact is not None and directory.config.artefact is not None
        return VersionSource(
            path=str(artefact),
            kind="artefact",
            runtime=directory.config.runtime,
            sha256=directory.config.artefact.sha256,
        )
    return VersionSource(path=str(directory.root))
