"""The heartbeat board: every server process's last sign of life, in memory they all share.

The supervisor makes the board before it forks anything, so the health process and every server
process map the same pages. Each server process writes its own slot from a task on its event
loop (an old tick therefore means a blocked loop), with flags for ready, draining and stalled
inference and a short reason: every `HEARTBEAT_S` while its state changes, every
`HEARTBEAT_STEADY_S` (or a quarter of `loop_block_s`, if less) once the same state has been
written a few times in a row (idle CPU), and at once when nudged (a model load finishing). The
supervisor sets the phase; the health process only reads (see `verdict.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastinfer.seqlock import SeqlockBoard, SharedInt

if TYPE_CHECKING:  # the health process imports this module for the board alone: no engine
    from fastinfer.repository.probed import ProbedState

PHASE_LOADING, PHASE_SERVING, PHASE_STOPPING = 0, 1, 2
PHASE_NAMES = {PHASE_LOADING: "loading", PHASE_SERVING: "serving", PHASE_STOPPING: "stopping"}
READY, DRAINING, STALLED = 1, 2, 4
HEARTBEAT_S = 0.2
HEARTBEAT_STEADY_S = 1.0  # the interval once the state holds still: a change shows within it
_STEADY_BEATS = 5  # the same flags and reason this many times in a row: the state holds still
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
    """The supervisor's phase, and one slot per server process (one writer each).

    With `fds` (another board's `fds`, inherited by a process exec'd since, such as the health
    process), that board again: the caller passes its number of `workers` too."""

    def __init__(self, workers: int, *, fds: tuple[int, int] | None = None) -> None:
        self.workers = workers
        phase_fd, slots_fd = fds if fds is not None else (None, None)
        self._phase = SharedInt(PHASE_LOADING, fd=phase_fd)
        self._slots = SeqlockBoard(workers, _BEAT.size, fd=slots_fd)

    @property
    def fds(self) -> tuple[int, int] | None:
        """The file descriptors of its memory, for a process to be exec'd (None: not Linux, the
        board is shared with forked processes only)."""
        if self._phase.fd is None or self._slots.fd is None:
            return None
        return self._phase.fd, self._slots.fd

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

    def __init__(
        self,
        board: HeartbeatBoard,
        index: int,
        state: ProbedState,
        *,
        loop_block_s: float = 10.0,
    ) -> None:
        self._board, self._index, self._state = board, index, state
        # Well inside the age at which the health process calls this loop blocked.
        self._steady_s = min(HEARTBEAT_STEADY_S, max(HEARTBEAT_S, loop_block_s / 4))
        self._wake: asyncio.Event | None = None

    def nudge(self) -> None:
        """Beat now (from the event loop's thread), not at the next interval."""
        if self._wake is not None:
            self._wake.set()

    async def run(self) -> None:
        self._wake = wake = asyncio.Event()
        last, same = (-1, ""), 0
        while True:
            written = self.beat()
            same = same + 1 if written == last else 0
            last = written
            interval = self._steady_s if same >= _STEADY_BEATS else HEARTBEAT_S
            if not wake.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), interval)
            wake.clear()

    def beat(self) -> tuple[int, str]:
        """One write of the slot: readiness as `/readyz` judges it in this process. Returns the
        flags and reason written."""
        from fastinfer.repository.probed import readiness_problems  # see the imports above

        engine = self._state.engine
        problems = readiness_problems(self._state)
        flags = (0 if problems else READY) | (DRAINING if engine.draining else 0)
        stalled = engine.stalled()
        if stalled:
            flags |= STALLED
        reason = "; ".join(f"{k}: {v}" for k, v in (stalled or problems).items())
        self._board.write(self._index, os.getpid(), flags, reason)
        return flags, reason
