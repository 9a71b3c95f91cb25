"""Startup to ready, and idle CPU, of `fastinfer serve` with both examples (issue 15).

    PYTHONPATH=src .venv/bin/python -m bench.idle [--runs 5] [--seconds 60] [--workers 2]
        [--src DIR]  (another checkout's src/, e.g. from `git archive`, for a before/after)

Each run spawns `python -m fastinfer serve examples/titanic examples/car_evaluation` on free
ports in its own session and times spawn → the first 200 from /readyz (polled every 10 ms). The
last run then sits unloaded for `--settle` seconds and is sampled for `--seconds`: utime + stime of
every process of the tree (supervisor, workers, health process) from /proc, as % of one CPU.
Prints the median startup and the idle CPU per process and in total. Run on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from bench.common import HOST, ROOT
from bench.servers import ServerSpec, idle_cpu, start, stop, wait_ready

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
    args = parser.parse_args(argv)
    startups: list[float] = []
    for run in range(args.runs):
        server = start(spec(args.workers, args.src))
        try:
            startups.append(wait_ready(server))
            print(f"run {run + 1}: ready after {startups[-1]:.2f} s", flush=True)
            if run == args.runs - 1 and args.seconds > 0:
                time.sleep(args.settle)
                idle = idle_cpu(server, args.seconds)
        finally:
            stop(server)
    print(f"startup to ready: median {statistics.median(startups):.2f} s "
          f"(min {min(startups):.2f}, max {max(startups):.2f}, {len(startups)} runs)")  # fmt: skip
    if args.seconds > 0:
        print(f"idle CPU over {idle['seconds']:.0f} s: {idle['cpu_percent_total']:.2f}% of one CPU")
        for process in idle["processes"]:
            print(f"  {process['cpu_percent']:6.2f}%  pid {process['pid']}  "
                  f"{process['cmdline'][:90]}")  # fmt: skip


if __name__ == "__main__":
    main()
