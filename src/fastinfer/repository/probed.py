"""What probes judge a server process by, whatever transport asks (HTTP's /livez and /readyz,
the v2 protocol's ServerLive and ServerReady over HTTP or gRPC, the heartbeat)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastinfer.engine import Engine
from fastinfer.repository.manager import ModelManager
from fastinfer.repository.registry import ModelRegistry
from fastinfer.repository.served import ModelState


@dataclass(frozen=True, slots=True)
class ProbedState:
    """What the probes read: the process's models, its engine, and whether startup is over."""

    registry: ModelRegistry
    engine: Engine
    manager: ModelManager

    @classmethod
    def of(cls, state: Any) -> ProbedState:
        """From the app's `state` (FastAPI's untyped namespace), once, typed from here on."""
        return cls(state.registry, state.engine, state.manager)


def readiness_problems(state: ProbedState) -> dict[str, str]:
    """Everything that should keep traffic away from this process, by model (or `_server`)."""
    registry, engine = state.registry, state.engine
    problems = registry.not_ready()
    if not state.manager.started:  # until every version of the starting state has loaded
        for model in registry:
            if not model.serving and model.state is not ModelState.FAILED:
                problems.setdefault(model.name, model.reason or "loading")
    problems.update(engine.not_ready())
    return problems
