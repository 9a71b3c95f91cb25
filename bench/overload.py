"""Goodput under overload: answered predictions per second when far more clients retry at once
than the server can serve.

fastinfer (2 workers, the Titanic example, 1 row per request) is first measured at its plateau
(`--peak-connections`, closed loop), then under 10x and more of that load: closed-loop clients
whose refused requests (503 + Retry-After) are retried at once, which is what a naive client
does. Goodput is the rate of 200 answers; the target is >= 80% of the plateau at 10x. The server's
log growth and memory are recorded too (a refusal must cost neither a log line each nor memory).

    python -m bench.overload [--duration 10] [--peak-connections 32] [--factors 10,32]

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


def measure(duration: int, peak_connections: int, factors: list[int]) -> dict[str, Any]:
    wrk = ensure_wrk()
    (workload,) = write_bodies(["titanic"], [1])
    server = servers.start(servers.fastinfer_spec([TITANIC_DIR], 2, with_workers_option=True))
    try:
        servers.wait_ready(server)
        run_wrk(wrk, server.port, workload.path, workload.body_path, peak_connections, 3)  # warm
        points = []
        for factor in [1, *factors]:
            connections = peak_connections * factor
            log_before = server.log_path.stat().st_size
            run = run_wrk(
                wrk, server.port, workload.path, workload.body_path, connections, duration
            )
            memory = servers.memory_report(server)
            points.append(
                {
                    "factor": factor,
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
                }
            )
            print(json.dumps(points[-1]), flush=True)
            time.sleep(2)  # let queues empty between points
        peak = points[0]["goodput_per_s"] or 1.0
        for point in points:
            point["goodput_of_peak"] = round(point["goodput_per_s"] / peak, 3)
        return {
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
        "| load | connections | 200s/s | of plateau | 503s/s | p99 (ms) | log bytes/s | RSS (MB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in result["points"]:
        load = "plateau" if p["factor"] == 1 else f"{p['factor']}x"
        lines.append(
            f"| {load} | {p['connections']} | {p['goodput_per_s']:,.0f} | "
            f"{p['goodput_of_peak']:.0%} | {p['refused_per_s']:,.0f} | {p['p99_ms']} | "
            f"{p['log_bytes_per_s']:,} | {p['rss_kb_total'] / 1024:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per point")
    parser.add_argument("--peak-connections", type=int, default=32)
    parser.add_argument("--factors", default="10,32", help="overload factors, comma-separated")
    args = parser.parse_args(argv)
    factors = [int(f) for f in args.factors.split(",") if f.strip()]
    result = measure(args.duration, args.peak_connections, factors)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "overload.json").write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
