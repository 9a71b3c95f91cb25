"""The engine of one server process: a ModelEngine per loaded model version, plus process-wide
state (draining) that the probes read.

It knows nothing of the repository: the caller hands it a runtime and the columns and batching
of a version, and keeps the ModelEngine it gets back (the repository's ServedModel holds it)."""

from __future__ import annotations

import time
from typing import Any

from fastinfer.engine.batcher import EngineObserver, ModelEngine
from fastinfer.model.spec import BatchingSpec
from fastinfer.runtimes import Runtime


class Engine:
    def __init__(
        self,
        *,
        workers_per_model: int = 1,
        watchdog_s: float = 60.0,
        observer: EngineObserver | None = None,
    ) -> None:
        self.observer = observer
        self.workers_per_model = workers_per_model
        self.watchdog_s = watchdog_s
        self.models: dict[str, ModelEngine] = {}  # by ServedModel.label
        self.draining = False

    def attach(
        self,
        label: str,
        runtime: Runtime,
        columns: list[str],
        batching: BatchingSpec,
        *,
        model_name: str,
    ) -> ModelEngine:
        """Start queue, batcher and workers for a version that has loaded (call on the loop).

        `label` names the version uniquely among live ones (`name/version[#revision]`). The
        self-test's time is not used as a first estimate: it is the model's cold first call."""
        engine = ModelEngine(
            label,
            runtime,
            columns,
            batching,
            workers=self.workers_per_model,
            observer=self.observer,
            model_name=model_name,
        )
        self.models[label] = engine
        return engine

    async def detach(self, label: str, engine: ModelEngine) -> None:
        """Stop a retired version's engine (once nothing is routed to it any more)."""
        if self.models.get(label) is engine:
            del self.models[label]
        await engine.stop()

    def not_ready(self) -> dict[str, str]:
        """Why this process should not get traffic, beyond model loading."""
        reasons: dict[str, str] = {}
        if self.draining:
            reasons["_server"] = "draining: shutting down"
        for name, engine in self.models.items():
            dead = engine.dead_workers()
            if dead:
                reasons[name] = f"inference worker(s) died: {', '.join(dead)}"
        return reasons

    def stalled(self) -> dict[str, float]:
        """Models whose inference made no progress for over the watchdog while work waited."""
        now = time.monotonic()
        stalled: dict[str, float] = {}
        for name, engine in self.models.items():
            seconds = engine.stalled_for(now)
            if seconds > self.watchdog_s:
                stalled[name] = round(seconds, 3)
        return stalled

    def status(self) -> dict[str, Any]:
        return {name: engine.status() for name, engine in self.models.items()}

    async def stop(self) -> None:
        for engine in self.models.values():
            await engine.stop()
        self.models.clear()
