"""Running model code in a process that will fork, without breaking its children.

A supervisor builds what it can before it forks its workers, so that they share one copy
(`Runtime.builds_before_fork`). Native thread pools are the danger: GNU OpenMP (used by
scikit-learn's histogram gradient boosting, among others) keeps its threads after a parallel
region, and a child forked after that hangs in its first parallel region. Inside
`single_native_thread()` every pool threadpoolctl knows (OpenMP, OpenBLAS, MKL) runs in the
calling thread, so no pool thread exists at the fork; the children use their pools as usual.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def single_native_thread() -> Iterator[None]:
    """Native thread pools limited to the calling thread for the duration."""
    try:
        from threadpoolctl import threadpool_limits  # scikit-learn's own dependency
    except ImportError:  # without it, no library that would start a pool is installed
        yield
        return
    with threadpool_limits(limits=1):
        yield


def thread_count() -> int:
    """Threads of this process, native ones included (0 where /proc is not available)."""
    try:
        return sum(1 for _ in Path("/proc/self/task").iterdir())
    except OSError:
        return 0
