"""Latencies in fixed log-linear buckets: exact below 256 µs, then 128 buckets per power of two
(percentiles within 0.8%), mergeable across connections and processes, no list of samples."""

from __future__ import annotations

import math

_SUB_BUCKETS = 128  # per power of two: percentiles are within 1/128 (0.8%) of the true value
_EXACT = 2 * _SUB_BUCKETS  # below this many microseconds a bucket is one microsecond wide


def bucket_of(micros: int) -> int:
    """The bucket of a latency in microseconds: exact below 256 µs, then 128 per power of two."""
    if micros < _EXACT:
        return max(micros, 0)
    shift = micros.bit_length() - 8  # keeps the top 8 bits: 128..255
    return _EXACT + (shift - 1) * _SUB_BUCKETS + (micros >> shift) - _SUB_BUCKETS


def bucket_value(index: int) -> float:
    """The middle of a bucket, in microseconds (the inverse of `bucket_of`, to within 0.4%)."""
    if index < _EXACT:
        return float(index)
    shift = (index - _EXACT) // _SUB_BUCKETS + 1
    top = (index - _EXACT) % _SUB_BUCKETS + _SUB_BUCKETS
    low = top << shift
    return low + ((1 << shift) - 1) / 2


class Histogram:
    """Latencies in log-linear buckets: constant memory and O(1) record, mergeable."""

    __slots__ = ("count", "counts", "max_us", "total_us")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.count = 0
        self.total_us = 0
        self.max_us = 0

    def record(self, micros: int) -> None:
        index = bucket_of(micros)
        counts = self.counts
        counts[index] = counts.get(index, 0) + 1
        self.count += 1
        self.total_us += micros
        if micros > self.max_us:  # noqa: PLR1730 - cheaper than max() on the hot path
            self.max_us = micros

    def merge(self, other: Histogram) -> None:
        for index, n in other.counts.items():
            self.counts[index] = self.counts.get(index, 0) + n
        self.count += other.count
        self.total_us += other.total_us
        self.max_us = max(self.max_us, other.max_us)

    def percentile(self, q: float) -> float:
        """The q-th percentile (0-100) in milliseconds; the nearest-rank value of its bucket."""
        if not self.count:
            return 0.0
        rank = max(1, math.ceil(self.count * q / 100 - 1e-9))  # q% of the values at or below
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                return min(bucket_value(index), float(self.max_us)) / 1000
        return self.max_us / 1000

    def mean_ms(self) -> float:
        return self.total_us / self.count / 1000 if self.count else 0.0
