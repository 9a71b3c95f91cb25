"""Goodput under overload: answered predictions per second when far more clients retry at once
than the server can serve.

fastinfer (2 workers, the Titanic example, 1 row per request) is first measured at its plateau
(the best 200s/s over `--peak` closed-loop connection counts), then with far more closed-loop
clients (`--overload`), each retrying a refused request (503 + Retry-After) at once, as a naive
client does. Goodput is the rate of 200 answers; "offered" is every answer's rate relative to the
plateau; the target is goodput >= 80% of the plateau at 10x offered. The server's log growth and
memory are recorded too (a refusal must cost neither a log line each nor memory).

    python -m bench.overload [--duration 10] [--peak 16,32,64] [--overload 512,2048,4096]

Writes bench/results/overload.json and prints a markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from typing import Any

from bench import servers
from bench.common import RESULTS, TITANIC_DIR, write_bodies
from bench.load import ensure_wrk, run_wrk


def _goodput(run: dict[str, Any]) -> float:
    """200 answers per second: wrk counts every non-2xx answer as a status error."""
    ok = run["requests"] - run["errors"]["status"]
    return round(ok / run["seconds"], 1) if run["seconds"] else 0.0


def measure(duration: int, peak: list[int], overload: list[int]) -> dict[str, Any]:
    wrk = ensure_wrk()
    (workload,) = write_bodies(["titanic"], [1])
    server = servers.start(servers.fastinfer_spec([TITANIC_DIR], 2, with_workers_option=True))
    try:
        servers.wait_ready(server)
        run_wrk(wrk, server.port, workload.path, workload.body_path, peak[0], 3)  # warm
        points = []
        for connections in [*peak, *overload]:
            log_before = server.log_path.stat().st_size
            tree = servers.process_tree(server.pid)
            cpu_before = sum(servers.cpu_seconds(pid) for pid in tree)
            run = run_wrk(
                wrk, server.port, workload.path, workload.body_path, connections, duration
            )
            memory = servers.memory_report(server)
            cpu = sum(servers.cpu_seconds(pid) for pid in tree) - cpu_before
            points.append(
                {
                    "overload": connections not in peak,
                    "connections": connections,
                    "requests_per_s": run["req_per_s"],
                    "goodput_per_s": _goodput(run),
                    "refused_per_s": round(run["errors"]["status"] / run["seconds"], 1),
                    "socket_errors": {k: v for k, v in run["errors"].items() if k != "status"},
                    "p99_ms": round(run["latency_us"]["p99"] / 1000, 2),
                    "log_bytes_per_s": round(
                        (server.log_path.stat().st_size - log_before) / run["seconds"]
                    ),
                    "rss_kb_total": memory["rss_kb_total"],
                    # the server's CPU per answer (200 or 503), in microseconds
                    "server_cpu_us_per_answer": round(cpu / max(1, run["requests"]) * 1e6, 1),
                    "server_cpu_cores": round(cpu / run["seconds"], 2),
                }
            )
            print(json.dumps(points[-1]), flush=True)
            time.sleep(2)  # let queues empty between points
        plateau = max(p["goodput_per_s"] for p in points if not p["overload"]) or 1.0
        for point in points:
            point["goodput_of_plateau"] = round(point["goodput_per_s"] / plateau, 3)
            point["offered_x"] = round(point["requests_per_s"] / plateau, 1)
        return {
            "plateau_per_s": plateau,
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "duration_s": duration,
            "workers": 2,
            "model": "titanic",
            "rows_per_request": 1,
            "points": points,
        }
    finally:
        servers.stop(server)


def table(result: dict[str, Any]) -> str:
    lines = [
        "| connections | answers/s (offered) | 200s/s | of plateau | 503s/s | p99 (ms) "
        "| log bytes/s | RSS (MB) | server CPU µs/answer | server cores |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in result["points"]:
        lines.append(
            f"| {p['connections']} | {p['requests_per_s']:,.0f} ({p['offered_x']}x) | "
            f"{p['goodput_per_s']:,.0f} | {p['goodput_of_plateau']:.0%} | "
            f"{p['refused_per_s']:,.0f} | {p['p99_ms']} | "
            f"{p['log_bytes_per_s']:,} | {p['rss_kb_total'] / 1024:.0f} | "
            f"{p['server_cpu_us_per_answer']} | {p['server_cpu_cores']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per point")
    parser.add_argument("--peak", default="16,32,64", help="connections for the plateau")
    parser.add_argument("--overload", default="512,2048,4096", help="connections beyond it")
    args = parser.parse_args(argv)
    peak = [int(c) for c in args.peak.split(",") if c.strip()]
    overload = [int(c) for c in args.overload.split(",") if c.strip()]
    result = measure(args.duration, peak, overload)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "overload.json").write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
