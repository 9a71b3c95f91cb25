"""The saturation curve: closed-loop load → `fastinfer_saturation` → throughput, per model.

Starts `fastinfer serve` with 2 server processes on a model, runs wrk at each connection count,
and reads /metrics (on the health port, so the scrape does not queue behind the load) over the
second half of each step, after the gauge's few-second average has followed the load.

    .venv/bin/python -m bench.saturation                         # titanic and slow, about 4 minutes
    .venv/bin/python -m bench.saturation --models titanic --duration 6 --connections 1,8,64

Writes bench/results/saturation.json and .md (the table docs/observability.md quotes).
"""

from __future__ import annotations

import argparse
import re
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from bench import load, servers
from bench.common import BODIES, BUILD, HOST, RESULTS, machine_facts, titanic_rows
from bench.cpu import load_average
from bench.models.slow import build_slow_model

CONNECTIONS = (1, 2, 4, 8, 16, 32, 64, 128)
GAUGES = {
    "saturation": "fastinfer_saturation",
    "event_loop": 'fastinfer_stage_saturation{stage="event_loop"}',
    "inference": 'fastinfer_stage_saturation{stage="inference"}',
    "loop_busy": "fastinfer_event_loop_busy_ratio",
}
_LINE = re.compile(r"^(\S+(?:\{[^}]*\})?) (\S+)$")


def _body(model: str) -> Path:
    BODIES.mkdir(parents=True, exist_ok=True)
    path = BODIES / f"saturation-{model}-1.json"
    rows = titanic_rows(1) if model == "titanic" else [{"x": 1.0}]
    path.write_bytes(orjson.dumps({"inputs": rows}))
    return path


def _model_dir(model: str) -> Path:
    if model == "titanic":
        return Path(__file__).resolve().parent.parent / "examples" / "titanic"
    return build_slow_model(BUILD / "models" / "slow")


def scrape(port: int) -> dict[str, float]:
    """The gauges of GAUGES from one /metrics answer."""
    import http.client

    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = _LINE.match(line)
        if match:
            values[match.group(1)] = float(match.group(2))
    return {key: values.get(name, float("nan")) for key, name in GAUGES.items()}


def step(
    wrk: str, server: servers.RunningServer, path: str, body: Path, conns: int, duration: int
) -> dict[str, Any]:
    """One load level: wrk for `duration` s; the gauges averaged over its second half."""
    result: dict[str, Any] = {}
    runner = threading.Thread(
        target=lambda: result.update(
            load.run_wrk(wrk, server.port, path, body, conns, duration, threads=min(conns, 2))
        )
    )
    runner.start()
    time.sleep(duration / 2)
    samples: list[dict[str, float]] = []
    while runner.is_alive() and len(samples) < 4 * duration:
        samples.append(scrape(server.probe_port))
        time.sleep(0.5)
    runner.join()
    gauges = {k: round(sum(s[k] for s in samples) / len(samples), 3) for k in GAUGES}
    return {
        "connections": conns,
        "req_per_s": result["req_per_s"],
        "latency_p50_ms": result["latency_us"]["p50"] / 1000,
        "errors": result["errors_total"],
        "load_average_1m": load_average()[0],
        **gauges,
    }


def run_model(model: str, wrk: str, connections: list[int], duration: int) -> list[dict[str, Any]]:
    spec = servers.fastinfer_spec([_model_dir(model)], 2, with_workers_option=True)
    body, path = _body(model), f"/v1/models/{model}/predict"
    server = servers.start(spec)
    try:
        servers.wait_ready(server)
        time.sleep(3)  # every server process listening (each joins once its models loaded)
        # Warm up at the plateau, as a pod that has carried real load: each process learns its
        # best rates (until then it reads conservatively high, docs/observability.md).
        load.run_wrk(wrk, server.port, path, body, 128, 10)
        time.sleep(10)  # the gauge's average forgets the warm-up
        idle = {"connections": 0, "req_per_s": 0.0, "latency_p50_ms": 0.0, "errors": 0}
        points = [{**idle, "load_average_1m": load_average()[0], **scrape(server.probe_port)}]
        for conns in connections:
            points.append(step(wrk, server, path, body, conns, duration))
            print(f"saturation: {model} {points[-1]}", flush=True)
        return points
    finally:
        servers.stop(server)


def markdown(results: dict[str, list[dict[str, Any]]], facts: dict[str, Any]) -> str:
    """One table per model: saturation is the pod's (the mean of the 2 processes); the stage
    columns and loop busy are the busiest process's; % of the best throughput measured."""
    lines = [
        f"{facts['date']}, {facts['cpu_model']}, {facts['cpus_usable']} CPUs usable, load "
        f"average {facts['load_average_before'][0]} before; wrk on the same machine.",
        "",
    ]
    for model, points in results.items():
        plateau = max(p["req_per_s"] for p in points)
        lines += [
            f"**{model}** (2 server processes)",
            "",
            "| connections | req/s | % of best | p50 ms | saturation | event loop | inference | "
            "loop busy | load avg |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for p in points:
            share = 100 * p["req_per_s"] / plateau if plateau else 0.0
            lines.append(
                f"| {p['connections']} | {p['req_per_s']:.0f} | {share:.0f}% | "
                f"{p['latency_p50_ms']:.1f} | {p['saturation']:.2f} | {p['event_loop']:.2f} | "
                f"{p['inference']:.2f} | {p['loop_busy']:.2f} | {p['load_average_1m']:.1f} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="titanic,slow", help="comma-separated: titanic,slow")
    parser.add_argument(
        "--connections", default=",".join(map(str, CONNECTIONS)), help="comma-separated"
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per load level")
    args = parser.parse_args(argv)
    wrk = load.ensure_wrk()
    connections = [int(c) for c in args.connections.split(",")]
    facts = {**machine_facts(), "load_average_before": load_average()}
    results = {m: run_model(m, wrk, connections, args.duration) for m in args.models.split(",")}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "saturation.json").write_bytes(
        orjson.dumps({"machine": facts, "results": results}, option=orjson.OPT_INDENT_2)
    )
    table = markdown(results, facts)
    (RESULTS / "saturation.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
