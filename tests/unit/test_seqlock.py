"""The seqlock board: whole slots or nothing, across processes, and a reader that gives up."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time

import pytest

from fastinfer.seqlock import SeqlockBoard, SharedInt
from tests.unit.dead_writer import die_while_writing


def test_a_slot_reads_back_what_was_written() -> None:
    board = SeqlockBoard(3, 10)
    assert [board.read(i) for i in range(3)] == [b"", b"", b""]  # never written
    board.write(1, b"hello")
    board.write(2, b"0123456789")
    assert board.read(1) == b"hello"
    assert board.read(2) == b"0123456789"
    board.write(1, b"")
    assert board.read(1) == b""
    assert board.read(0) == b""


def test_a_write_that_does_not_fit_is_refused_and_the_slot_is_untouched() -> None:
    board = SeqlockBoard(1, 4)
    board.write(0, b"abcd")
    with pytest.raises(ValueError, match="do not fit"):
        board.write(0, b"abcde")
    assert board.read(0) == b"abcd"


def test_a_slot_outside_the_board_is_an_error() -> None:
    board = SeqlockBoard(2, 8)
    with pytest.raises(IndexError):
        board.write(2, b"")
    with pytest.raises(IndexError):
        board.read(-1)
    with pytest.raises(ValueError):
        SeqlockBoard(0, 8)


def test_a_child_process_writes_what_the_parent_reads() -> None:
    board = SeqlockBoard(2, 32)
    word = SharedInt(7)
    pid = os.fork()
    if pid == 0:
        try:
            board.write(1, b"from the child")
            word.set(42)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert board.read(1) == b"from the child"
    assert word.get() == 42


def test_a_process_exec_d_since_attaches_to_the_same_memory_by_its_fds() -> None:
    board = SeqlockBoard(2, 32)
    word = SharedInt(7)
    board.write(0, b"from the parent")
    assert board.fd is not None and word.fd is not None
    script = (
        "import sys\n"
        "from fastinfer.seqlock import SeqlockBoard, SharedInt\n"
        "board = SeqlockBoard(2, 32, fd=int(sys.argv[1]))\n"
        "word = SharedInt(fd=int(sys.argv[2]))\n"
        "assert board.read(0) == b'from the parent', board.read(0)\n"
        "assert word.get() == 7, word.get()  # attaching leaves the value as it is\n"
        "board.write(1, b'from the child')\n"
        "word.set(42)\n"
    )
    subprocess.run(
        [sys.executable, "-c", script, str(board.fd), str(word.fd)],
        pass_fds=(board.fd, word.fd),
        check=True,
        timeout=30,
    )
    assert board.read(1) == b"from the child"
    assert word.get() == 42


def test_attaching_to_memory_smaller_than_the_board_is_refused() -> None:
    small = SeqlockBoard(1, 8)
    assert small.fd is not None
    fd = os.dup(small.fd)
    try:
        with pytest.raises(ValueError, match="bytes, not the"):
            SeqlockBoard(4, 8, fd=fd)
    finally:
        os.close(fd)  # still the caller's: a board takes an fd over only once attached


_SIZE = 4096


def _payload(n: int) -> bytes:
    """Self-describing: the write's number, then a length and a filler both derived from it."""
    return struct.pack("<q", n) + bytes([n % 251]) * (n % (_SIZE - 8))


def test_a_reader_racing_a_writer_in_another_process_never_sees_a_torn_slot() -> None:
    board = SeqlockBoard(1, _SIZE)
    stop = SharedInt(0)
    pid = os.fork()
    if pid == 0:
        try:
            n = 0
            while not stop.get():
                n += 1
                board.write(0, _payload(n))
        finally:
            os._exit(0)
    seen: set[int] = set()
    try:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            payload = board.read(0)
            if not payload:  # None (gave up) or b"" (before the first write): not torn
                continue
            n = struct.unpack_from("<q", payload)[0]
            assert payload == _payload(n), f"torn read of write {n}"
            seen.add(n)
    finally:
        stop.set(1)
        os.waitpid(pid, 0)
    assert len(seen) > 10  # the writer kept writing while the reader read


def test_a_reader_gives_up_on_a_slot_left_mid_write_and_the_next_write_repairs_it() -> None:
    board = SeqlockBoard(2, 16)
    board.write(0, b"before")
    board.write(1, b"neighbour")
    die_while_writing(lambda: board.write(0, b"after"))

    started = time.monotonic()
    assert board.read(0) is None
    assert time.monotonic() - started < 0.5  # bounded: a few milliseconds
    assert board.read(0, tries=1) is None
    assert board.read(1) == b"neighbour"

    board.write(0, b"repaired")
    assert board.read(0) == b"repaired"
    board.write(0, b"again")
    assert board.read(0) == b"again"
