"""Where the machine's CPU went during a measurement: the server, wrk, the harness, and others.

Other processes on the machine (a test suite, a build) take CPU from the server under test and
make its numbers meaningless; each point records how much they took so a reader can tell.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _machine_busy_seconds() -> float:
    """CPU seconds spent not idle, over all CPUs, since boot (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return (total - idle) / _CLK_TCK


def _tree_seconds(pids: list[int]) -> dict[int, float]:
    from bench.servers import cpu_seconds

    seconds: dict[int, float] = {}
    for pid in pids:
        try:
            seconds[pid] = cpu_seconds(pid)
        except OSError:
            continue
    return seconds


def _rusage_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


@dataclass
class CpuSnapshot:
    at: float
    machine: float
    server: dict[int, float]
    children: float  # reaped children of the harness: wrk
    harness: float  # this process: the prober thread included

    @classmethod
    def take(cls, server_pids: list[int]) -> CpuSnapshot:
        return cls(
            at=time.perf_counter(),
            machine=_machine_busy_seconds(),
            server=_tree_seconds(server_pids),
            children=_rusage_seconds(resource.RUSAGE_CHILDREN),
            harness=_rusage_seconds(resource.RUSAGE_SELF),
        )

    def until(self, later: CpuSnapshot) -> dict[str, float]:
        """CPU use between the two snapshots, each in % of one core (N cores: up to N x 100)."""
        elapsed = max(later.at - self.at, 1e-9)
        server = sum(later.server[p] - self.server[p] for p in self.server if p in later.server)
        parts = {
            "machine": later.machine - self.machine,
            "server": server,
            "load_generator": later.children - self.children,
            "harness": later.harness - self.harness,
        }
        parts["other"] = max(
            0.0, parts["machine"] - parts["server"] - parts["load_generator"] - parts["harness"]
        )
        return {f"{k}_pct": round(100 * v / elapsed, 1) for k, v in parts.items()}


def load_average() -> list[float]:
    return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]


def background_cpu(seconds: float) -> float:
    """% of one core the machine spends busy over `seconds` while the harness only waits."""
    started, busy = time.perf_counter(), _machine_busy_seconds()
    time.sleep(seconds)
    return round(100 * (_machine_busy_seconds() - busy) / (time.perf_counter() - started), 1)


def wait_for_quiet(max_wait_s: float, threshold_pct: float, sample_s: float = 0.5) -> float:
    """Wait (at most `max_wait_s`) until the machine's busy CPU is under `threshold_pct`.

    Called while the server under test is idle, so what is busy is someone else. Returns the
    last sample, in % of one core.
    """
    deadline = time.perf_counter() + max_wait_s
    busy = background_cpu(sample_s)
    for _ in range(int(max_wait_s / sample_s) + 1):
        if busy <= threshold_pct or time.perf_counter() >= deadline:
            break
        busy = background_cpu(sample_s)
    return busy
