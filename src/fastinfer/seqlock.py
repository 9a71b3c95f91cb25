"""Memory that processes forked from one parent share, without locks: seqlock slots and plain words.

A board is a shared `mmap` of a memfd (an anonymous in-memory file) made before the fork, so every
forked process maps the same pages; nothing is named on disk and nothing outlives the processes.
A process started afresh (exec'd) gets the same pages by inheriting the file descriptor (`fd`)
and attaching to it (`fd=` in the constructors). Each slot holds up to `capacity` bytes under
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
import os
import struct
import time
import weakref
import zlib

# One native int64 at an 8-byte-aligned offset: a single load or store, never torn.
_WORD = struct.Struct("q")
_SLOT_HEAD = 3 * _WORD.size  # the sequence counter, the payload's length, its CRC-32
READ_TRIES = 100
_SPIN_TRIES = 10  # tries before the reader starts pausing between attempts
_PAUSE_S = 50e-6  # lets a writer that was preempted mid-write finish (it holds no lock to wait on)


def _shared_memory(owner: object, size: int, fd: int | None) -> tuple[mmap.mmap, int | None]:
    """A shared mapping of `size` bytes and its file descriptor (closed with `owner`): a new
    memfd, zero-filled, or the one `fd` names (inherited from the process that made it). Where
    there is no memfd (not Linux): an anonymous mapping, shared with forked children only."""
    if fd is None:
        if not hasattr(os, "memfd_create"):
            return mmap.mmap(-1, size), None
        fd = os.memfd_create("fastinfer-board", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, size)
        except OSError:
            os.close(fd)
            raise
    elif os.fstat(fd).st_size < size:
        raise ValueError(f"fd {fd} holds {os.fstat(fd).st_size} bytes, not the {size} expected")
    memory = mmap.mmap(fd, size)  # MAP_SHARED, read and write
    weakref.finalize(owner, os.close, fd)
    return memory, fd


class SeqlockBoard:
    """`slots` fixed-size slots of up to `capacity` bytes each; see the module docstring.

    With `fd` (a board's `fd`, inherited by a process exec'd since), the same board again: the
    same `slots` and `capacity` are the caller's to pass."""

    def __init__(self, slots: int, capacity: int, *, fd: int | None = None) -> None:
        if slots < 1 or capacity < 0:
            raise ValueError(f"a board needs at least one slot and a capacity >= 0 ({slots=})")
        self.slots = slots
        self.capacity = capacity
        self._stride = _SLOT_HEAD + -(-capacity // _WORD.size) * _WORD.size  # 8-byte aligned
        self._memory, self.fd = _shared_memory(self, slots * self._stride, fd)

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
    """One int64 in shared memory. A single aligned word is never torn: it needs no counter.

    With `fd` (a word's `fd`, inherited by a process exec'd since), the same word, unchanged."""

    def __init__(self, value: int = 0, *, fd: int | None = None) -> None:
        self._memory, self.fd = _shared_memory(self, _WORD.size, fd)
        if fd is None:
            self.set(value)

    def get(self) -> int:
        return int(_WORD.unpack_from(self._memory, 0)[0])

    def set(self, value: int) -> None:
        _WORD.pack_into(self._memory, 0, value)
