"""The load generator behind `fastinfer loadtest`: closed-loop HTTP/1.1 clients on keep-alive
connections, cheap enough per request that a 2-core machine can drive fastinfer at its peak.

Why it looks the way it does: a Python client easily costs more CPU per request than the server
it measures. So each connection is an `asyncio.Protocol` (no coroutine, no task and no
StreamReader per request): the request bytes are encoded once, the next request is written from
`data_received` as soon as an answer is complete, the response head is parsed with a handful of
`bytes.find` calls, and latencies go into fixed log-linear buckets (`Histogram`), not a list.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from fastinfer.cli.http_response import (
    MAX_HEAD_BYTES,
    SERVER_TIMING_ENTRY,
    Head,
    ProtocolError,
    ResponseParser,
    parse_head,
    parse_server_timing,
)
from fastinfer.cli.latency import Histogram, bucket_of, bucket_value

__all__ = [
    "MAX_HEAD_BYTES",
    "Head",
    "Histogram",
    "LevelStats",
    "ProtocolError",
    "ResponseParser",
    "Target",
    "bucket_of",
    "bucket_value",
    "event_loop_factory",
    "parse_head",
    "parse_server_timing",
    "run_level",
]


# --- one concurrency level --------------------------------------------------------------------


@dataclass
class LevelStats:
    """What one concurrency level saw while it was measured (answers after its end are not)."""

    concurrency: int
    duration_s: float = 0.0
    latency: Histogram = field(default_factory=Histogram)
    statuses: dict[int, int] = field(default_factory=dict)
    refused_retry_after: int = 0  # 503 with Retry-After: the server shedding load on purpose
    connection_errors: dict[str, int] = field(default_factory=dict)
    timeouts: int = 0
    client_cpu_s: float = 0.0  # this process's CPU time over the level: is the client the limit?
    reconnects: int = 0  # connections the server closed (Connection: close) and were reopened
    timing_sums: dict[str, float] = field(default_factory=dict)  # Server-Timing, ms, summed
    timing_count: int = 0
    versions: dict[str, int] = field(default_factory=dict)

    @property
    def answered(self) -> int:
        return self.latency.count

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    @property
    def errors(self) -> int:
        return self.answered - self.ok + sum(self.connection_errors.values()) + self.timeouts

    def record_timing(self, value: bytes) -> None:
        sums = self.timing_sums
        for name, dur in SERVER_TIMING_ENTRY.findall(value):
            key = name.decode()
            sums[key] = sums.get(key, 0.0) + float(dur)
        self.timing_count += 1

    def summary(self, rows_per_request: int | None) -> dict[str, Any]:
        """The level as JSON-ready numbers (latencies and Server-Timing in milliseconds)."""
        seconds = self.duration_s or 1.0
        hist = self.latency
        return {
            "concurrency": self.concurrency,
            "duration_s": round(self.duration_s, 3),
            "requests": self.answered,
            "ok": self.ok,
            "req_per_s": round(self.answered / seconds, 1),
            "rows_per_s": (
                round(self.ok * rows_per_request / seconds, 1) if rows_per_request else None
            ),
            "latency_ms": {
                "p50": round(hist.percentile(50), 3),
                "p90": round(hist.percentile(90), 3),
                "p99": round(hist.percentile(99), 3),
                "p999": round(hist.percentile(99.9), 3),
                "max": round(hist.max_us / 1000, 3),
                "mean": round(hist.mean_ms(), 3),
            },
            "errors": {
                "total": self.errors,
                "status": {str(k): v for k, v in sorted(self.statuses.items()) if k >= 300},
                "refused_retry_after": self.refused_retry_after,
                "connection": dict(sorted(self.connection_errors.items())),
                "timeouts": self.timeouts,
            },
            "reconnects": self.reconnects,
            "client_cpu_percent": round(100 * self.client_cpu_s / seconds, 1),
            "server_timing_ms": {
                name: round(total / self.timing_count, 3)
                for name, total in self.timing_sums.items()
            }
            if self.timing_count
            else {},
            "server_timing_samples": self.timing_count,
            "model_versions": dict(self.versions),
        }


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    request: bytes  # the whole request, encoded once


class _Connection(asyncio.Protocol):
    """One closed-loop client: sends, reads the answer, sends again, on one connection."""

    __slots__ = ("_level", "_parser", "_started", "_timed_out", "transport")

    def __init__(self, level: _Level) -> None:
        self._level = level
        self._parser = ResponseParser()
        self._started = 0.0  # > 0 while a request is in flight
        self._timed_out = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def send(self) -> None:
        assert self.transport is not None
        self._started = time.perf_counter()
        self.transport.write(self._level.request)

    def data_received(self, data: bytes) -> None:
        try:
            head = self._parser.feed(data)
        except ProtocolError:
            self._fail("ProtocolError")
            return
        if head is not None:
            self._answered(head)

    def _answered(self, head: Head) -> None:
        now = time.perf_counter()
        level = self._level
        started, self._started = self._started, 0.0
        if started and now <= level.deadline:
            level.record(head, now - started)
        if head.close:
            if now <= level.deadline:
                level.stats.reconnects += 1
            assert self.transport is not None
            self.transport.close()  # connection_lost opens the next one
        elif now < level.deadline:
            self.send()
        else:
            level.settled(self)

    def connection_lost(self, exc: Exception | None) -> None:
        level = self._level
        head = self._parser.eof()
        if head is not None and self._started:
            self._answered(head)
            return
        if self._started and not self._timed_out:  # sent, and the connection ended unanswered
            self._started = 0.0
            level.error(type(exc).__name__ if exc else "ConnectionClosed")
        level.lost(self)

    def check_timeout(self, now: float, timeout: float) -> None:
        if self._started and now - self._started > timeout and self.transport is not None:
            self._timed_out = True
            if self._started <= self._level.deadline:
                self._level.stats.timeouts += 1
            self._started = 0.0
            self.transport.abort()

    def _fail(self, kind: str) -> None:
        if self._started:
            self._started = 0.0
            self._level.error(kind)
        assert self.transport is not None
        self.transport.abort()


class _Level:
    """The connections of one concurrency level, and what they record."""

    def __init__(self, target: Target, concurrency: int, timeout: float) -> None:
        self.request = target.request
        self.target = target
        self.stats = LevelStats(concurrency)
        self.timeout = timeout
        self.deadline = float("inf")  # set when the clock starts
        self.started_at = 0.0
        self.live: set[_Connection] = set()
        self.idle: asyncio.Event = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    def record(self, head: Head, seconds: float) -> None:
        stats = self.stats
        stats.latency.record(int(seconds * 1_000_000))
        status = head.status
        stats.statuses[status] = stats.statuses.get(status, 0) + 1
        if status == 200:
            if head.server_timing is not None:
                stats.record_timing(head.server_timing)
            if head.model_version is not None:
                version = head.model_version.decode("latin-1")
                stats.versions[version] = stats.versions.get(version, 0) + 1
        elif status == 503 and head.retry_after is not None:
            stats.refused_retry_after += 1

    def error(self, kind: str) -> None:
        if time.perf_counter() <= self.deadline:
            errors = self.stats.connection_errors
            errors[kind] = errors.get(kind, 0) + 1

    def settled(self, connection: _Connection) -> None:
        """A connection finished its last request after the deadline."""
        self.live.discard(connection)
        if connection.transport is not None:
            connection.transport.close()
        if not self.live:
            self.idle.set()

    def lost(self, connection: _Connection) -> None:
        """A connection ended: open another in its place while the level runs."""
        self.live.discard(connection)
        if time.perf_counter() < self.deadline:
            task = asyncio.get_running_loop().create_task(self._replace())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif not self.live and not self._tasks:
            self.idle.set()

    async def _replace(self) -> None:
        while time.perf_counter() < self.deadline:
            connection = await self.connect()
            if connection is not None:
                connection.send()
                return
            await asyncio.sleep(0.05)  # refused: retry soon, without spinning on a dead port
        if not self.live:
            self.idle.set()

    async def connect(self) -> _Connection | None:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(self), self.target.host, self.target.port
                ),
                self.timeout,
            )
        except (OSError, TimeoutError) as exc:
            self.error(type(exc).__name__)
            return None
        self.live.add(connection)
        return connection

    async def watch_timeouts(self) -> None:
        """Abort requests older than the timeout: one sweep every 50 ms, no timer per request."""
        while True:
            await asyncio.sleep(min(0.05, self.timeout / 4))
            now = time.perf_counter()
            for connection in list(self.live):
                connection.check_timeout(now, self.timeout)


async def run_level(
    target: Target,
    concurrency: int,
    duration: float,
    timeout: float,
    on_start: Callable[[LevelStats, float], None] | None = None,
) -> LevelStats:
    """Open `concurrency` connections, then keep one request in flight on each for `duration`
    seconds. Connections are opened before the clock starts, so the measurement is of requests,
    not of a connection storm; answers to requests still in flight at the end are not counted.
    """
    level = _Level(target, concurrency, timeout)
    opened = await asyncio.gather(*(level.connect() for _ in range(concurrency)))
    level.started_at = time.perf_counter()
    cpu_at = time.process_time()
    level.deadline = level.started_at + duration
    if on_start is not None:
        on_start(level.stats, level.started_at)
    for connection in opened:
        if connection is not None:
            connection.send()
    for _ in range(concurrency - sum(c is not None for c in opened)):
        task = asyncio.get_running_loop().create_task(level._replace())
        level._tasks.add(task)
        task.add_done_callback(level._tasks.discard)
    watcher = asyncio.get_running_loop().create_task(level.watch_timeouts())
    try:
        await asyncio.sleep(duration)
        level.stats.duration_s = time.perf_counter() - level.started_at
        level.stats.client_cpu_s = time.process_time() - cpu_at
        if level.live:  # let the last answers in (not counted), so the next level starts clean
            level.idle.clear()
            if level.live:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(level.idle.wait(), timeout)
    finally:
        watcher.cancel()
        for connection in list(level.live):
            if connection.transport is not None:
                connection.transport.abort()
        for task in list(level._tasks):
            task.cancel()
    return level.stats


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's loop when installed (uvicorn[standard] brings it): about twice the requests per
    CPU second of asyncio's own."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] installs it on Linux and macOS
        return asyncio.new_event_loop
    return uvloop.new_event_loop
