"""The heartbeat board: every server process's last sign of life, in memory they all share.

The supervisor makes the board before it forks anything, so the health process and every server
process map the same pages. Each server process writes its own slot every `HEARTBEAT_S` from a
task on its event loop (an old tick therefore means a blocked loop), with flags for ready,
draining and stalled inference and a short reason. The supervisor sets the phase; the health
process only reads (see `verdict.py`).
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
from dataclasses import dataclass

from fastinfer.repository.probed import ProbedState, readiness_problems
from fastinfer.seqlock import SeqlockBoard, SharedInt

PHASE_LOADING, PHASE_SERVING, PHASE_STOPPING = 0, 1, 2
PHASE_NAMES = {PHASE_LOADING: "loading", PHASE_SERVING: "serving", PHASE_STOPPING: "stopping"}
READY, DRAINING, STALLED = 1, 2, 4
HEARTBEAT_S = 0.2
_BEAT = struct.Struct("<qdq96s")  # pid, tick (time.monotonic), flags, reason (UTF-8, cut)


@dataclass(frozen=True)
class WorkerBeat:
    """One server process's slot as last written (pid 0: no process has written it yet)."""

    index: int
    pid: int
    tick: float
    flags: int
    reason: str


class HeartbeatBoard:
    """The supervisor's phase, and one slot per server process (one writer each)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._phase = SharedInt(PHASE_LOADING)
        self._slots = SeqlockBoard(workers, _BEAT.size)

    def set_phase(self, phase: int) -> None:
        self._phase.set(phase)

    def phase(self) -> int:
        return self._phase.get()

    def write(self, index: int, pid: int, flags: int, reason: str = "") -> None:
        encoded = reason.encode("utf-8", "replace")[:96]
        self._slots.write(index, _BEAT.pack(pid, time.monotonic(), flags, encoded))

    def read(self, index: int) -> WorkerBeat | None:
        """The slot's last beat, or None when it stayed mid-write (its writer died writing)."""
        payload = self._slots.read(index)
        if payload is None:
            return None
        if not payload:
            return WorkerBeat(index, 0, 0.0, 0, "")
        pid, tick, flags, reason = _BEAT.unpack(payload)
        text = reason.rstrip(b"\0").decode("utf-8", "replace")
        return WorkerBeat(index, int(pid), float(tick), int(flags), text)


class Heartbeat:
    """The server side: a loop task that writes this process's state into its slot."""

    def __init__(self, board: HeartbeatBoard, index: int, state: ProbedState) -> None:
        self._board, self._index, self._state = board, index, state

    async def run(self) -> None:
        while True:
            self.beat()
            await asyncio.sleep(HEARTBEAT_S)

    def beat(self) -> None:
        """One write of the slot: readiness as `/readyz` judges it in this process."""
        engine = self._state.engine
        problems = readiness_problems(self._state)
        flags = (0 if problems else READY) | (DRAINING if engine.draining else 0)
        stalled = engine.stalled()
        if stalled:
            flags |= STALLED
        reason = "; ".join(f"{k}: {v}" for k, v in (stalled or problems).items())
        self._board.write(self._index, os.getpid(), flags, reason)
