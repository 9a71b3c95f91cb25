"""The engine of one server process: a ModelEngine per loaded model version, plus process-wide
state (draining) that the probes read."""

from __future__ import annotations

import time
from typing import Any

from fastinfer.engine.batcher import EngineObserver, ModelEngine
from fastinfer.engine.work import WorkItem
from fastinfer.repository.served import ServedModel
from fastinfer.runtimes import Prediction, Row


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

    def attach(self, model: ServedModel) -> ModelEngine:
        """Start queue, batcher and workers for a model that has loaded (call on the loop)."""
        assert model.runtime is not None and model.schema is not None
        engine = ModelEngine(
            model.label,
            model.runtime,
            model.schema.columns,
            model.config.batching,
            workers=self.workers_per_model,
            first_batch_seconds=model.self_test_seconds,
            observer=self.observer,
            model_name=model.name,
        )
        self.models[model.label] = engine
        model.engine = engine
        return engine

    async def detach(self, model: ServedModel) -> None:
        """Stop a retired version's engine (once nothing is routed to it any more)."""
        engine = model.engine
        if engine is None:
            return
        model.engine = None
        if self.models.get(model.label) is engine:
            del self.models[model.label]
        await engine.stop()

    async def infer(
        self, model: ServedModel, rows: list[Row], deadline: float, request_id: str
    ) -> tuple[list[Prediction], WorkItem]:
        engine = model.engine
        if engine is None:
            raise RuntimeError(f"model {model.label!r} has no engine")
        return await engine.infer(rows, deadline, request_id)

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
