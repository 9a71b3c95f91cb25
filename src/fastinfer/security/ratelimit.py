"""Token buckets: each key may send `rate` requests a second on average, `burst` at once.

A bucket lives in one server process. The supervisor's processes each get an equal share of a
key's rate and burst (see `share`), so the whole server allows about the configured rate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class TokenBucket:
    """`burst` tokens, refilled at `rate` a second; a request takes one."""

    __slots__ = ("_clock", "_stamp", "_tokens", "burst", "rate")

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._stamp = clock()

    def take(self) -> float:
        """0.0 if a token was taken, else the seconds until one will be there."""
        now = self._clock()
        tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return 0.0
        self._tokens = tokens
        return (1.0 - tokens) / self.rate

    def left(self) -> tuple[int, int]:
        """As of the last `take`: the whole requests left, and the whole seconds until the
        bucket is full again (what X-RateLimit-Remaining and -Reset tell a client)."""
        tokens = self._tokens
        return int(tokens), math.ceil((self.burst - tokens) / self.rate)


def retry_after(wait: float) -> int:
    """A Retry-After value: whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(wait))


def share(rate: float, burst: float | None, processes: int) -> tuple[float, float]:
    """One server process's rate and burst of a key's limit (burst defaults to the rate, and a
    process's burst is at least 1 request)."""
    processes = max(1, processes)
    total_burst = burst if burst is not None else max(1.0, rate)
    return rate / processes, max(1.0, total_burst / processes)
