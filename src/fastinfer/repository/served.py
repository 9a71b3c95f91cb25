"""One loaded model version (`ServedModel`) and the versions of one model name (`ModelVersions`).

The registry creates and loads them; the data plane routes requests to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from fastinfer.model.hooks import Hooks
from fastinfer.model.schema import RowSchema
from fastinfer.model.spec import ModelConfig, ModelDirectory
from fastinfer.repository.layout import version_key
from fastinfer.repository.state import VersionSource
from fastinfer.runtimes import Runtime

if TYPE_CHECKING:
    from fastinfer.engine.batcher import ModelEngine


class ModelState(StrEnum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


@dataclass
class ServedModel:
    """One model as the service sees it: where it came from and how loading went."""

    directory: ModelDirectory
    state: ModelState = ModelState.LOADING
    reason: str | None = "loading"
    runtime: Runtime | None = None
    schema: RowSchema | None = None
    sha256: str | None = None
    loaded_at: datetime | None = None
    load_seconds: float | None = None
    self_test: str = "pending"
    self_test_seconds: float | None = None
    prepared: bool = False
    source: VersionSource = field(default_factory=lambda: VersionSource(path=""))
    engine: ModelEngine | None = None  # attached by the engine once loaded
    in_flight: int = 0  # requests that resolved this version and have not been answered
    hooks: Hooks = field(default_factory=Hooks)

    @property
    def revision(self) -> int:
        return self.source.revision

    @property
    def label(self) -> str:
        """`name/version`, plus `#revision` for a reloaded version: unique among live ones."""
        suffix = f"#{self.revision}" if self.revision else ""
        return f"{self.name}/{self.version}{suffix}"

    @property
    def serving(self) -> bool:
        """Loaded, self-tested and with an engine: requests may be routed to it."""
        return self.state is ModelState.READY and self.engine is not None

    @property
    def config(self) -> ModelConfig:
        return self.directory.config

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def version(self) -> str:
        return self.config.version

    @property
    def ready(self) -> bool:
        return self.state is ModelState.READY


class ModelVersions:
    """The loaded versions of one model name, and which of them answers by default."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.versions: dict[str, ServedModel] = {}
        self.pinned: str | None = None
        self.changes = 0  # bump after changing `versions` or `pinned` (invalidates the caches)
        self._order: tuple[int, list[str]] = (-1, [])
        self._default: tuple[int, str | None, ServedModel | None] = (-1, None, None)

    def ordered(self) -> list[ServedModel]:
        """Oldest first."""
        if self._order[0] != self.changes:
            self._order = (self.changes, sorted(self.versions, key=version_key))
        versions = self.versions
        return [versions[v] for v in self._order[1]]

    def default(self) -> ServedModel | None:
        """The pinned version if it serves, else the newest version that serves.

        Cached per change (every request asks), and recomputed if the cached one stopped serving.
        """
        changes, pinned, model = self._default
        if (
            changes == self.changes
            and pinned == self.pinned
            and model is not None
            and model.serving
        ):
            return model
        model = self._choose_default()
        self._default = (self.changes, self.pinned, model)
        return model

    @property
    def default_version(self) -> str | None:
        """The version `default()` answers with; None while none serves."""
        model = self.default()
        return model.version if model is not None else None

    def _choose_default(self) -> ServedModel | None:
        pinned = self.versions.get(self.pinned) if self.pinned else None
        if pinned is not None and pinned.serving:
            return pinned
        return next((m for m in reversed(self.ordered()) if m.serving), None)
