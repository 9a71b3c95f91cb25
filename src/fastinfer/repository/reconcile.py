"""Makes what this process serves match a desired state: load, switch, retire.

1. load every version the state adds (in a thread; the old versions keep serving),
2. switch: install the new set in one synchronous step on the event loop,
3. retire: wait until no request holds a retired version, then stop its engine.

Apart from the manager because this is the one path every change takes in a process, whoever
published it; the manager decides when to take it (at startup, on a change made here, on one
published by another process) and what to tell the other processes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from fastinfer.engine import Engine
from fastinfer.model.spec import ModelConfigError
from fastinfer.observability.logging import get_logger
from fastinfer.repository.registry import ModelRegistry
from fastinfer.repository.served import ModelState, ServedModel
from fastinfer.repository.state import DesiredState

log = get_logger("fastinfer.repository")

Spawn = Callable[[Coroutine[Any, Any, None], str], None]


class Reconciler:
    """Applies desired states to one process's registry and engine, one at a time."""

    def __init__(
        self, registry: ModelRegistry, engine: Engine, drain_timeout_s: float, spawn: Spawn
    ) -> None:
        self.registry = registry
        self.engine = engine
        self.drain_timeout_s = drain_timeout_s
        self._spawn = spawn  # runs a retirement in the background (the manager's tasks)
        self.applied = 0  # generation this process serves
        self._lock = asyncio.Lock()

    async def apply(self, state: DesiredState, *, strict: bool) -> dict[str, str]:
        """Load what `state` adds, switch, retire; failures by `name/version`.

        strict: switch nothing if anything fails (the change came through this process).
        """
        async with self._lock:
            candidates, failures = self._candidates(state)
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

    def _candidates(self, state: DesiredState) -> tuple[list[ServedModel], dict[str, str]]:
        """The versions `state` adds or changes, not loaded yet; failures of those whose
        configuration or files cannot be read."""
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
        return candidates, failures

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
        deadline = time.monotonic() + self.drain_timeout_s
        while model.in_flight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await self._detach(model)
        model.runtime = None  # let the memory go
        model.state, model.reason = ModelState.LOADING, "retired"
