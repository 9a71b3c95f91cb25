"""Memory that processes forked from one parent share, without locks: seqlock slots and plain words.

A board is an anonymous `mmap` made before the fork, so every process maps the same pages; nothing
is named on disk and nothing outlives the processes. Each slot holds up to `capacity` bytes under
a sequence counter. The counter is odd while the slot is being written; a reader copies the slot
and keeps the copy only if the counter was even and unchanged across it, so it never returns a
torn slot and never makes the writer wait. Each slot has one writer at a time: that rule is the
caller's (one server process per slot, or a writer holding a lock).

A reader's patience is bounded. A writer that dies between its two counter stores leaves the slot
odd until the next write, and some readers run on an event loop: `read` gives up after
`READ_TRIES` attempts (a few milliseconds) and returns None, and each caller decides what an
unreadable slot means. The next write repairs the slot.

Python has no memory barriers, and the counter alone proved not enough: x86-64 keeps plain
stores in order, but the payload is copied with string instructions (`rep movsb` in memcpy),
whose loads and stores the CPU may reorder around the counter's (a reader racing a writer saw
about one torn slot in six one-second races). So each write also stores the payload's CRC-32,
and a reader keeps a copy only if the counter was even and unchanged across it AND the copy
matches its CRC: a torn copy passes both with a chance of about 2**-32 per torn read (and the
heartbeat writes again 200 ms later).
"""

from __future__ import annotations

import mmap
import struct
import time
import zlib

# One native int64 at an 8-byte-aligned offset: a single load or store, never torn.
_WORD = struct.Struct("q")
_SLOT_HEAD = 3 * _WORD.size  # the sequence counter, the payload's length, its CRC-32
READ_TRIES = 100
_SPIN_TRIES = 10  # tries before the reader starts pausing between attempts
_PAUSE_S = 50e-6  # lets a writer that was preempted mid-write finish (it holds no lock to wait on)


class SeqlockBoard:
    """`slots` fixed-size slots of up to `capacity` bytes each; see the module docstring."""

    def __init__(self, slots: int, capacity: int) -> None:
        if slots < 1 or capacity < 0:
            raise ValueError(f"a board needs at least one slot and a capacity >= 0 ({slots=})")
        self.slots = slots
        self.capacity = capacity
        self._stride = _SLOT_HEAD + -(-capacity // _WORD.size) * _WORD.size  # 8-byte aligned
        self._memory = mmap.mmap(-1, slots * self._stride)

    def write(self, index: int, payload: bytes) -> None:
        """Replace the slot's contents; the caller is its only writer."""
        if len(payload) > self.capacity:
            raise ValueError(f"{len(payload)} bytes do not fit a {self.capacity}-byte slot")
        at = self._offset(index)
        checksum = zlib.crc32(payload)
        seq = _WORD.unpack_from(self._memory, at)[0]
        seq += 2 if seq % 2 else 1  # odd: being written (odd already: its writer died mid-write)
        _WORD.pack_into(self._memory, at, seq)
        _WORD.pack_into(self._memory, at + _WORD.size, len(payload))
        _WORD.pack_into(self._memory, at + 2 * _WORD.size, checksum)
        self._memory[at + _SLOT_HEAD : at + _SLOT_HEAD + len(payload)] = payload
        _WORD.pack_into(self._memory, at, seq + 1)

    def read(self, index: int, *, tries: int = READ_TRIES) -> bytes | None:
        """The slot's last complete write (b"" if never written), or None if it stayed mid-write
        through every try."""
        at = self._offset(index)
        for attempt in range(tries):
            seq = _WORD.unpack_from(self._memory, at)[0]
            if seq % 2 == 0:
                length = _WORD.unpack_from(self._memory, at + _WORD.size)[0]
                if 0 <= length <= self.capacity:  # else torn: a length from another write
                    checksum = _WORD.unpack_from(self._memory, at + 2 * _WORD.size)[0]
                    payload = self._memory[at + _SLOT_HEAD : at + _SLOT_HEAD + length]
                    unchanged = _WORD.unpack_from(self._memory, at)[0] == seq
                    if unchanged and zlib.crc32(payload) == checksum:
                        return payload
            if attempt >= _SPIN_TRIES:
                time.sleep(_PAUSE_S)
        return None

    def _offset(self, index: int) -> int:
        if not 0 <= index < self.slots:
            raise IndexError(f"slot {index} of a {self.slots}-slot board")
        return index * self._stride


class SharedInt:
    """One int64 in shared memory. A single aligned word is never torn: it needs no counter."""

    def __init__(self, value: int = 0) -> None:
        self._memory = mmap.mmap(-1, _WORD.size)
        self.set(value)

    def get(self) -> int:
        return int(_WORD.unpack_from(self._memory, 0)[0])

    def set(self, value: int) -> None:
        _WORD.pack_into(self._memory, 0, value)
