"""Startup to ready, idle memory and idle CPU of `fastinfer serve` with both examples (issue 15).

    PYTHONPATH=src .venv/bin/python -m bench.idle [--runs 5] [--seconds 60] [--workers 2]
        [--src DIR]  (another checkout's src/, e.g. from `git archive`, for a before/after)
        [--out bench/results/idle.md]

Each run spawns `python -m fastinfer serve examples/titanic examples/car_evaluation` on free
ports in its own session and times spawn → the first 200 from /readyz (polled every 10 ms). The
last run then sits unloaded for `--settle` seconds, its memory is read (PSS and RSS of every
process of the tree, from /proc/PID/smaps_rollup), and it is sampled for `--seconds`: utime +
stime of every process (supervisor, workers, health process) from /proc, as % of one CPU.
Prints (and writes to `--out`) the median startup, the idle PSS and the idle CPU per process and
in total, against issue 15's targets. Run on a quiet machine, with no other Python process
mapping the same libraries (shared pages lower every process's PSS).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import HOST, ROOT
from bench.servers import ServerSpec, idle_cpu, memory_report, start, stop, wait_ready

EXAMPLES = [ROOT / "examples" / "titanic", ROOT / "examples" / "car_evaluation"]


def spec(workers: int, src: str) -> ServerSpec:
    argv = [sys.executable, "-m", "fastinfer", "serve", *map(str, EXAMPLES), "--host", HOST]
    argv += ["--port", "{port}", "--health-port", "{health_port}", "--workers", str(workers)]
    env = {"PYTHONPATH": src, "FASTINFER_LOG_LEVEL": "warning"}
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] += os.pathsep + os.environ["PYTHONPATH"]
    return ServerSpec("fastinfer-idle", argv, env, workers=workers)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--settle", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--src", default=str(ROOT / "src"), help="the fastinfer sources to run")
    parser.add_argument("--out", default=None, help="also write the summary (markdown) here")
    args = parser.parse_args(argv)
    startups: list[float] = []
    memory: dict[str, Any] | None = None
    load_before = os.getloadavg()[0]
    for run in range(args.runs):
        server = start(spec(args.workers, args.src))
        try:
            startups.append(wait_ready(server))
            print(f"run {run + 1}: ready after {startups[-1]:.2f} s", flush=True)
            if run == args.runs - 1 and args.seconds > 0:
                time.sleep(args.settle)
                memory = memory_report(server)
                idle = idle_cpu(server, args.seconds)
        finally:
            stop(server)
    median = statistics.median(startups)
    lines = [
        f"startup to ready: median {median:.2f} s (min {min(startups):.2f}, "
        f"max {max(startups):.2f}, {len(startups)} runs); target ≤ 1.5 s: {_met(median <= 1.5)}"
    ]
    if memory is not None:
        total_mb = (memory["pss_kb_total"] or 0) / 1024
        lines.append(
            f"idle PSS, whole tree ({memory['count']} processes): {total_mb:.1f} MB; "
            f"target ≤ 250 MB: {_met(total_mb <= 250)}"
        )
        lines += [
            f"  {(p['pss_kb'] or 0) / 1024:7.1f} MB PSS {(p['rss_kb'] or 0) / 1024:7.1f} MB RSS"
            f"  pid {p['pid']}  {p['cmdline'][:80]}"
            for p in memory["processes"]
        ]
    if args.seconds > 0:
        total = idle["cpu_percent_total"]
        lines.append(
            f"idle CPU over {idle['seconds']:.0f} s: {total:.2f}% of one CPU; "
            f"target < 1%: {_met(total < 1.0)}"
        )
        lines += [
            f"  {p['cpu_percent']:6.2f}%  pid {p['pid']}  {p['cmdline'][:90]}"
            for p in idle["processes"]
        ]
    print("\n".join(lines))
    if args.out:
        header = (
            f"# `python -m bench.idle` ({time.strftime('%Y-%m-%d %H:%M')}, "
            f"{args.workers} workers, load average before {load_before:.2f})\n\n"
        )
        Path(args.out).write_text(header + "```\n" + "\n".join(lines) + "\n```\n")


def _met(met: bool) -> str:
    return "met" if met else "missed"


if __name__ == "__main__":
    main()
