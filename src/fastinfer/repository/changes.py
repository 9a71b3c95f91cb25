"""What a change to the desired state gives back: its result, or why it was refused.

Apart from the manager because two modules ask for changes and refuse them: the manager (the
admin API's operations, and every change's load-switch-retire) and the repository sync (polling,
repository syncs, the v2 `load`), which refuses what the repository lacks. The admin and v2 APIs
turn a refusal into an HTTP error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastinfer.repository.state import DesiredState


class ChangeRefused(Exception):  # noqa: N818 - a refusal, with an HTTP status for the caller
    """The change cannot be made as asked; nothing was changed."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


@dataclass
class ChangeResult:
    generation: int
    changed: bool
    workers: dict[str, str] = field(default_factory=dict)  # worker → "applied" or its error

    def as_dict(self) -> dict[str, Any]:
        return {"generation": self.generation, "changed": self.changed, "workers": self.workers}


Mutation = Callable[[DesiredState], DesiredState]
