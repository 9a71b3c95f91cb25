"""The supervisor hands back the pages it touched only to start.

It imports the libraries and deserialises (and, where it can, builds) the models before it
forks, so that its workers share one copy. Once they serve, it only waits on them, yet the
file-backed pages that it alone touched stay resident in it and count against the pod: the
code libraries run only at import, parts of libraries no worker calls (pyarrow, which pandas
loads when installed) — about 60 MB of the supervisor's PSS with the two examples.

MADV_PAGEOUT (Linux 5.4+) reclaims them as memory pressure would, now: only pages no other
process maps (what the workers use stays), in effect only clean file pages where there is no
swap, and nothing is lost: a page touched again is read back from its file. Elsewhere, or where
the kernel refuses, nothing happens.
"""

from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import dataclass
from pathlib import Path

_MADV_PAGEOUT = 21  # <linux/mman.h>


@dataclass(frozen=True)
class Released:
    mappings: int
    refused: int
    rss_before_kb: int
    rss_after_kb: int


def release_startup_pages() -> Released | None:
    """Page out this process's file-backed pages that no other process maps (None: not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    before = _rss_kb()
    mappings = refused = 0
    for start, end in _file_mappings():
        mappings += 1
        if madvise(start, end - start, _MADV_PAGEOUT) != 0:
            refused += 1  # EINVAL before Linux 5.4; the mapping is left as it was
    return Released(mappings, refused, before, _rss_kb())


def _file_mappings() -> list[tuple[int, int]]:
    """Address ranges of this process's mappings of files (libraries, mapped data)."""
    ranges = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5].startswith("/"):
            start, end = (int(address, 16) for address in fields[0].split("-"))
            ranges.append((start, end))
    return ranges


def _rss_kb() -> int:
    try:
        resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return resident_pages * os.sysconf("SC_PAGE_SIZE") // 1024
