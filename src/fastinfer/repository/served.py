"""One loaded model version (`ServedModel`) and the versions of one model name (`ModelVersions`).

The registry creates and loads them; the data plane routes requests to them.
"""

from __future__ import annotations

import math
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
    built: bool = False  # schema, faster path and self-test done (before fork where it can be)
    build_seconds: float = 0.0
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


class SmoothWeighted:
    """Smooth weighted round robin (nginx's): deterministic, and interleaved.

    Over every `sum(weights)` picks (weights divided by their gcd first) each version is picked
    exactly its weight's times, spread out: 90/10 is nine of one and one of the other in every
    ten requests of a process, not a random draw that is only 90/10 on average.
    """

    __slots__ = ("_current", "_total", "_weights", "keys")

    def __init__(self, weights: dict[str, int]) -> None:
        divisor = math.gcd(*weights.values()) or 1
        self.keys = list(weights)
        self._weights = [w // divisor for w in weights.values()]
        self._total = sum(self._weights)
        self._current = [0] * len(self._weights)

    def pick(self) -> str:
        current, weights = self._current, self._weights
        best = 0
        for i, weight in enumerate(weights):
            current[i] += weight
            if current[i] > current[best]:
                best = i
        current[best] -= self._total
        return self.keys[best]


class ModelVersions:
    """The loaded versions of one model name, and which of them answers by default."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.versions: dict[str, ServedModel] = {}
        self.pinned: str | None = None
        self.split: dict[str, int] | None = None  # version → weight: a canary split
        self.staged: tuple[str, ...] = ()  # loaded, but default only once promoted
        self.changes = 0  # bump after changing `versions`, `pinned`, `split` or `staged`
        self._order: tuple[int, list[str]] = (-1, [])
        self._default: tuple[int, ServedModel | None] = (-1, None)
        self._wheel: tuple[int, SmoothWeighted | None] = (-1, None)

    def ordered(self) -> list[ServedModel]:
        """Oldest first."""
        if self._order[0] != self.changes:
            self._order = (self.changes, sorted(self.versions, key=version_key))
        versions = self.versions
        return [versions[v] for v in self._order[1]]

    def default(self) -> ServedModel | None:
        """The version that stands for the model's default: the pinned version if it serves,
        else the split's heaviest version that serves, else the newest version that serves and
        is not staged (else the newest that serves).

        Stable (describing the model asks it); a request picks its version with `choose`. Cached
        per change (every request may ask), recomputed if the cached one stopped serving.
        """
        changes, model = self._default
        if changes == self.changes and model is not None and model.serving:
            return model
        model = self._choose_default()
        self._default = (self.changes, model)
        return model

    def choose(self) -> ServedModel | None:
        """The version that answers this unversioned request: `default()`, or with a split
        the next version of the split's weighted round robin (one that serves)."""
        if not self.split:
            return self.default()
        changes, wheel = self._wheel
        if changes != self.changes or wheel is None:
            wheel = SmoothWeighted(self.split)
            self._wheel = (self.changes, wheel)
        for _ in wheel.keys:
            model = self.versions.get(wheel.pick())
            if model is not None and model.serving:
                return model
        return self.default()

    @property
    def default_version(self) -> str | None:
        """The version `default()` answers with; None while none serves."""
        model = self.default()
        return model.version if model is not None else None

    def role(self, version: str) -> str | None:
        """How a version takes unversioned requests: "default", "split" (a share by weight),
        "staged" (none until promoted), or None (only at its version path)."""
        if self.split:
            if version in self.split:
                return "split"
        elif version == self.default_version:
            return "default"
        return "staged" if version in self.staged else None

    def _choose_default(self) -> ServedModel | None:
        pinned = self.versions.get(self.pinned) if self.pinned else None
        if pinned is not None and pinned.serving:
            return pinned
        if self.split:
            weights = self.split
            members = [m for m in self.ordered() if m.version in weights and m.serving]
            if members:  # the heaviest; of equal weights the newest
                return max(reversed(members), key=lambda m: weights[m.version])
        newest = [m for m in reversed(self.ordered()) if m.serving]
        return next((m for m in newest if m.version not in self.staged), None) or next(
            iter(newest), None
        )
