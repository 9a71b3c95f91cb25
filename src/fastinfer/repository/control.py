"""Shared memory that keeps every server process on the same desired state.

The supervisor creates the board before it forks, so all workers map the same pages. One
admin change at a time holds the cross-process lock, publishes a new state (JSON under a
seqlock), and waits until every live worker has acknowledged the generation in its slot.
Workers poll one integer (the generation) a few times a second, which costs nothing.
"""

from __future__ import annotations

import contextlib
import mmap
import multiprocessing
import os
import struct
from dataclasses import dataclass

from fastinfer.repository.state import DesiredState

_HEADER = struct.Struct("<qqq")  # seq, generation, document length
_HOLDER_AT = _HEADER.size  # pid of the process holding the change lock (0: none)
_SLOT = struct.Struct("<qqq200s")  # seq, pid, applied generation, error
_DOCUMENT_BYTES = 1 << 20


class StateTooLarge(ValueError):  # noqa: N818
    """More models and versions than the board holds."""


@dataclass(frozen=True)
class Acknowledgement:
    index: int
    pid: int
    generation: int
    error: str


class ControlBoard:
    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._document_at = _HEADER.size + 8
        self._slots_at = self._document_at + _DOCUMENT_BYTES
        self._memory = mmap.mmap(-1, self._slots_at + slots * _SLOT.size)
        self._lock = multiprocessing.get_context("fork").Lock()

    # -- the desired state ------------------------------------------------------------------

    def generation(self) -> int:
        return int(struct.unpack_from("<q", self._memory, 8)[0])

    def publish(self, state: DesiredState) -> None:
        """Write a new state; call with the lock held (one writer at a time)."""
        document = state.model_dump_json().encode()
        if len(document) > _DOCUMENT_BYTES:
            raise StateTooLarge(f"the desired state is {len(document)} bytes (limit 1 MiB)")
        seq = struct.unpack_from("<q", self._memory, 0)[0]
        struct.pack_into("<q", self._memory, 0, seq + 1)
        self._memory[self._document_at : self._document_at + len(document)] = document
        _HEADER.pack_into(self._memory, 0, seq + 1, state.generation, len(document))
        struct.pack_into("<q", self._memory, 0, seq + 2)

    def read(self) -> DesiredState:
        while True:
            seq, generation, length = _HEADER.unpack_from(self._memory, 0)
            if seq % 2:
                continue
            document = bytes(self._memory[self._document_at : self._document_at + length])
            if struct.unpack_from("<q", self._memory, 0)[0] == seq:
                break
        if generation == 0:
            return DesiredState()
        return DesiredState.model_validate_json(document)

    # -- who has applied what ----------------------------------------------------------------

    def acknowledge(self, index: int, generation: int, error: str = "") -> None:
        offset = self._slots_at + index * _SLOT.size
        seq = struct.unpack_from("<q", self._memory, offset)[0]
        struct.pack_into("<q", self._memory, offset, seq + 1)
        encoded = error.encode("utf-8", "replace")[:200]
        _SLOT.pack_into(self._memory, offset, seq + 1, os.getpid(), generation, encoded)
        struct.pack_into("<q", self._memory, offset, seq + 2)

    def clear(self, index: int) -> None:
        """Forget a worker that exited (its replacement acknowledges for itself)."""
        offset = self._slots_at + index * _SLOT.size
        seq = struct.unpack_from("<q", self._memory, offset)[0]
        _SLOT.pack_into(self._memory, offset, seq + 2, 0, 0, b"")

    def acknowledgements(self) -> list[Acknowledgement]:
        answers = []
        for index in range(self.slots):
            offset = self._slots_at + index * _SLOT.size
            while True:
                seq, pid, generation, error = _SLOT.unpack_from(self._memory, offset)
                if seq % 2 == 0 and struct.unpack_from("<q", self._memory, offset)[0] == seq:
                    break
            text = error.rstrip(b"\0").decode("utf-8", "replace")
            answers.append(Acknowledgement(index, int(pid), int(generation), text))
        return answers

    # -- one change at a time ----------------------------------------------------------------

    def acquire(self, timeout: float) -> bool:
        if not self._lock.acquire(True, timeout):
            return False
        struct.pack_into("<q", self._memory, _HOLDER_AT, os.getpid())
        return True

    def release(self) -> None:
        struct.pack_into("<q", self._memory, _HOLDER_AT, 0)
        with contextlib.suppress(ValueError):
            self._lock.release()

    def release_for(self, pid: int) -> bool:
        """Free the lock if a process died holding it (the supervisor calls this on reaping)."""
        if struct.unpack_from("<q", self._memory, _HOLDER_AT)[0] != pid:
            return False
        self.release()
        return True
