"""A seqlock writer that dies between its two counter stores, as a SIGKILL mid-write would."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from fastinfer import seqlock


class _DiesOnOddStore:
    """Stands in for the seqlock's word format: stores an odd value (a write opening), then dies."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.size = real.size

    def unpack_from(self, buffer: Any, offset: int = 0) -> tuple[int, ...]:
        return self._real.unpack_from(buffer, offset)  # type: ignore[no-any-return]

    def pack_into(self, buffer: Any, offset: int, value: int) -> None:
        self._real.pack_into(buffer, offset, value)
        if value % 2:
            os._exit(0)


def die_while_writing(write: Callable[[], object]) -> None:
    """Run `write` in a forked child that dies at its first odd counter store."""
    pid = os.fork()
    if pid == 0:
        try:
            seqlock._WORD = _DiesOnOddStore(seqlock._WORD)  # type: ignore[assignment]
            write()
        finally:
            os._exit(1)  # the write finished: it never opened a slot
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the writer did not die mid-write"
