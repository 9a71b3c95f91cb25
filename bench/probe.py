"""A liveness prober that behaves like the kubelet: a fresh connection per probe, a timeout."""

from __future__ import annotations

import math
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from bench.common import HOST

PROBE_INTERVAL_S = 0.1
PROBE_TIMEOUT_S = 1.0
MAX_PROBE_SECONDS = 900.0  # a forgotten prober still stops by itself


@dataclass
class ProbeRecord:
    at: float  # seconds since the prober started
    seconds: float  # time to the full response (or to the failure)
    ok: bool
    error: str | None = None


def probe_once(port: int, path: str = "/livez", timeout: float = PROBE_TIMEOUT_S) -> ProbeRecord:
    """GET `path` on a new connection; ok only for a complete 200 within `timeout` in all."""
    started = time.perf_counter()
    deadline = started + timeout
    request = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n".encode()
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(request)
            data = b""
            for _ in range(1000):  # a /livez answer is a few hundred bytes
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    raise TimeoutError("timed out")
                sock.settimeout(remaining)
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
                if _complete(data):
                    break
        elapsed = time.perf_counter() - started
        status = data.split(b" ", 2)[1] if data.startswith(b"HTTP/") else b"?"
        if status != b"200" or not _complete(data):
            return ProbeRecord(0.0, elapsed, False, f"status {status.decode(errors='replace')}")
        return ProbeRecord(0.0, elapsed, True)
    except (TimeoutError, OSError) as exc:
        elapsed = time.perf_counter() - started
        kind = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
        return ProbeRecord(0.0, elapsed, False, kind)


def _complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip() or 0)
    return False  # no length: wait for the server to close


class Prober:
    """Probes `path` every `interval` seconds on a thread until stopped (or MAX_PROBE_SECONDS)."""

    def __init__(self, port: int, path: str = "/livez", interval: float = PROBE_INTERVAL_S) -> None:
        self.port, self.path, self.interval = port, path, interval
        self.records: list[ProbeRecord] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-prober", daemon=True)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=PROBE_TIMEOUT_S + 2)

    def _run(self) -> None:
        started = time.perf_counter()
        limit = int(MAX_PROBE_SECONDS / self.interval)
        for tick in range(limit):
            if self._stop.is_set():
                return
            record = probe_once(self.port, self.path)
            record.at = time.perf_counter() - started
            self.records.append(record)
            # Fixed cadence like the kubelet's; a probe that overran is not followed by a burst.
            next_at = started + (tick + 1) * self.interval
            wait = next_at - time.perf_counter()
            if wait > 0 and self._stop.wait(wait):
                return

    def summary(self) -> dict[str, Any]:
        return summarize(self.records)


@dataclass
class _Stats:
    values: list[float] = field(default_factory=list)

    def percentile(self, q: float) -> float | None:
        if not self.values:
            return None
        ordered = sorted(self.values)
        index = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))  # nearest rank
        return ordered[index]


def summarize(records: list[ProbeRecord]) -> dict[str, Any]:
    """Counts, failures (by kind) and latency percentiles of the successful probes, in ms."""
    ok = _Stats([r.seconds * 1000 for r in records if r.ok])
    failures: dict[str, int] = {}
    for r in records:
        if not r.ok:
            failures[r.error or "failed"] = failures.get(r.error or "failed", 0) + 1
    every = _Stats([(r.seconds if r.ok else PROBE_TIMEOUT_S) * 1000 for r in records])

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 3)

    return {
        "probes": len(records),
        "failed": sum(failures.values()),
        "failures": failures,
        "p50_ms": rounded(every.percentile(50)),
        "p99_ms": rounded(every.percentile(99)),
        "max_ms": rounded(max(every.values) if every.values else None),
        "ok_p99_ms": rounded(ok.percentile(99)),
    }
