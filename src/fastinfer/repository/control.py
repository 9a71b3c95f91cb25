"""Shared memory that keeps every server process on the same desired state.

The supervisor creates the board before it forks, so all workers map the same pages. One
admin change at a time holds the cross-process lock, publishes a new state (JSON in a seqlock
slot), and waits until every live worker has acknowledged the generation in its slot.
Workers poll one integer (the generation) a few times a second, which costs nothing.

A slot left mid-write (its writer died between the seqlock's two stores) reads as what this
process last read there: stale rather than stuck, since the reads run on the event loop. The
next write repairs it: the next publish for the state, the supervisor's `clear` (when it reaps
the dead worker) for an acknowledgement.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import struct
from dataclasses import dataclass

from fastinfer.repository.state import DesiredState
from fastinfer.seqlock import SeqlockBoard, SharedInt

_ACK = struct.Struct("<qq200s")  # pid, applied generation, error (UTF-8, cut)
_DOCUMENT_BYTES = 1 << 20


class StateTooLarge(ValueError):  # noqa: N818
    """More models and versions than the board holds."""


@dataclass(frozen=True)
class Acknowledgement:
    index: int
    pid: int  # 0: no worker in this slot
    generation: int
    error: str


class ControlBoard:
    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._document = SeqlockBoard(1, _DOCUMENT_BYTES)
        self._generation = SharedInt()  # set once the document it announces is complete
        self._acks = SeqlockBoard(slots, _ACK.size)
        self._holder = SharedInt()  # pid of the process holding the change lock (0: none)
        self._lock = multiprocessing.get_context("fork").Lock()
        # What this process last read (or published): the answer while a slot is unreadable.
        self._last_state = DesiredState()
        self._last_acks = [Acknowledgement(i, 0, 0, "") for i in range(slots)]

    # -- the desired state ------------------------------------------------------------------

    def generation(self) -> int:
        return self._generation.get()

    def publish(self, state: DesiredState) -> None:
        """Write a new state; call with the lock held (one writer at a time)."""
        document = state.model_dump_json().encode()
        if len(document) > _DOCUMENT_BYTES:
            raise StateTooLarge(f"the desired state is {len(document)} bytes (limit 1 MiB)")
        self._document.write(0, document)
        self._generation.set(state.generation)
        self._last_state = state

    def read(self) -> DesiredState:
        """The published state (generation 0 before the first publish)."""
        document = self._document.read(0)
        if document is None:
            return self._last_state  # left mid-write: see the module docstring
        state = DesiredState.model_validate_json(document) if document else DesiredState()
        self._last_state = state
        return state

    # -- who has applied what ----------------------------------------------------------------

    def acknowledge(self, index: int, generation: int, error: str = "") -> None:
        encoded = error.encode("utf-8", "replace")[:200]
        self._acks.write(index, _ACK.pack(os.getpid(), generation, encoded))

    def clear(self, index: int) -> None:
        """Forget a worker that exited (its replacement acknowledges for itself)."""
        self._acks.write(index, b"")

    def acknowledgements(self) -> list[Acknowledgement]:
        for index in range(self.slots):
            payload = self._acks.read(index)
            if payload is None:
                continue  # keep the last one read
            if payload:
                pid, generation, error = _ACK.unpack(payload)
                text = error.rstrip(b"\0").decode("utf-8", "replace")
                self._last_acks[index] = Acknowledgement(index, int(pid), int(generation), text)
            else:
                self._last_acks[index] = Acknowledgement(index, 0, 0, "")
        return list(self._last_acks)

    # -- one change at a time ----------------------------------------------------------------

    def acquire(self, timeout: float) -> bool:
        if not self._lock.acquire(True, timeout):
            return False
        self._holder.set(os.getpid())
        return True

    def release(self) -> None:
        self._holder.set(0)
        with contextlib.suppress(ValueError):
            self._lock.release()

    def release_for(self, pid: int) -> bool:
        """Free the lock if a process died holding it (the supervisor calls this on reaping)."""
        if self._holder.get() != pid:
            return False
        self.release()
        return True
