"""The desired state: which versions of which models should be loaded, and the default of each.

It is data, shared by every server process (see `control.ControlBoard`); each process loads and
retires versions until what it serves matches. A change is a new state with a higher
generation, so a process that missed changes (a restarted worker) converges in one step.
"""

from __future__ import annotations

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
    model_config = ConfigDict(frozen=True)

    versions: dict[str, VersionSource] = Field(default_factory=dict)
    pinned: str | None = None


class DesiredState(BaseModel):
    model_config = ConfigDict(frozen=True)

    generation: int = 0
    models: dict[str, ModelEntry] = Field(default_factory=dict)

    def same_models(self, other: DesiredState) -> bool:
        return self.models == other.models


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
