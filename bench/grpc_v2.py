"""v2 over gRPC beside v2 over REST: the same Titanic rows, the same server processes.

fastinfer (2 workers, the Titanic example, `--grpc-port`) is driven closed-loop at each
connection count and rows-per-request: REST v2 JSON (`POST /v2/models/titanic/infer`) with wrk;
gRPC `ModelInfer` with h2load (nghttp2's HTTP/2 load generator: a gRPC unary call is one HTTP/2
POST of a length-prefixed protobuf message), once with typed `contents` and once with
`raw_input_contents` (what tritonclient.grpc sends). One stream per connection: closed loop, as
wrk. Each gRPC body is checked with a real gRPC call before it is measured (h2load counts HTTP
200s; a gRPC error is a 200 with a grpc-status trailer), and the server's own count of gRPC
answers by status is read from /metrics after the run.

    python -m bench.grpc_v2 [--duration 10] [--connections 1,32] [--rows 1,32]

Writes bench/results/grpc.json and bench/results/grpc.md (quoted in docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bench import servers
from bench.common import BUILD, HOST, RESULTS, TITANIC_DIR, TITANIC_V2_DATATYPES, titanic_rows
from bench.load import ensure_wrk, run_wrk

WORKERS = 2
BODIES = BUILD / "grpc-bodies"
MODEL = "titanic"
_NUMPY = {"INT64": "<i8", "FP64": "<f8"}
_CONTENTS = {"INT64": "int64_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents"}


def _rows(count: int) -> list[dict[str, Any]]:
    """`count` holdout passengers with every string present (a BYTES tensor has no null)."""
    rows = [r for r in titanic_rows(400, exact=False) if r.get("Cabin") and r.get("Embarked")]
    if len(rows) < count:
        raise RuntimeError(f"only {len(rows)} complete rows; {count} are needed")
    return rows[:count]


def _column(rows: list[dict[str, Any]], name: str) -> list[Any]:
    values = [row.get(name) for row in rows]
    return (
        [math.nan if v is None else v for v in values]
        if TITANIC_V2_DATATYPES[name] == "FP64"
        else values
    )


def rest_body(rows: list[dict[str, Any]]) -> bytes:
    inputs = [
        {"name": n, "datatype": t, "shape": [len(rows)], "data": _column(rows, n)}
        for n, t in TITANIC_V2_DATATYPES.items()
    ]
    return orjson.dumps({"inputs": inputs})


def grpc_message(rows: list[dict[str, Any]], *, raw: bool) -> Any:
    from fastinfer.grpc.proto import grpc_service_pb2 as pb

    request = pb.ModelInferRequest(model_name=MODEL)
    for name, datatype in TITANIC_V2_DATATYPES.items():
        values = _column(rows, name)
        tensor = request.inputs.add(name=name, datatype=datatype, shape=[len(rows)])
        if datatype == "BYTES":
            encoded = [str(v).encode() for v in values]
            if raw:
                request.raw_input_contents.append(
                    b"".join(len(e).to_bytes(4, "little") + e for e in encoded)
                )
            else:
                tensor.contents.bytes_contents.extend(encoded)
        elif raw:
            request.raw_input_contents.append(np.array(values, dtype=_NUMPY[datatype]).tobytes())
        else:
            getattr(tensor.contents, _CONTENTS[datatype]).extend(values)
    return request


def check_grpc(port: int, message: Any) -> None:
    """One real call with this message: it must be answered OK, with a label per row."""
    import grpc

    from fastinfer.grpc.proto import grpc_service_pb2_grpc

    with grpc.insecure_channel(f"{HOST}:{port}") as channel:
        stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
        response = stub.ModelInfer(message, timeout=10)
    rows = message.inputs[0].shape[0]
    if [o.name for o in response.outputs] != ["label", "probabilities"]:
        raise RuntimeError(f"unexpected gRPC answer: {response}")
    if list(response.outputs[0].shape) != [rows]:
        raise RuntimeError(f"the gRPC answer has shape {response.outputs[0].shape}, not [{rows}]")


def ensure_h2load() -> str:
    """h2load; installs Debian's nghttp2-client when missing and running as root."""
    found = shutil.which("h2load")
    if found:
        return found
    if os.geteuid() != 0:
        raise RuntimeError("h2load is not installed: sudo apt-get install -y nghttp2-client")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "nghttp2-client"]
    if subprocess.run(install, env=env, check=False, timeout=600).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=False, timeout=600)
        subprocess.run(install, env=env, check=False, timeout=600)
    found = shutil.which("h2load")
    if not found:
        raise RuntimeError("h2load could not be installed (apt-get install nghttp2-client)")
    return found


_UNITS = {"us": 1.0, "ms": 1000.0, "s": 1e6}


def _micros(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def run_h2load(h2load: str, port: int, body: Path, connections: int, duration: int) -> dict:
    """One closed-loop run of gRPC unary calls (one stream per connection)."""
    argv = [
        h2load,
        f"-c{connections}",
        "-m1",
        f"-t{min(2, connections)}",
        f"-D{duration}",
        "--warm-up-time=1",
        "-d",
        str(body),
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        f"http://{HOST}:{port}/inference.GRPCInferenceService/ModelInfer",
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, check=False)
    text = out.stdout
    finished = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", text)
    counts = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded", text)
    latency = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", text)
    if not (finished and counts and latency):
        raise RuntimeError(f"h2load exited with {out.returncode}:\n{text}\n{out.stderr}")
    return {
        "command": " ".join(argv),
        "req_per_s": float(finished.group(2)),
        "requests": int(counts.group(2)),
        "succeeded": int(counts.group(3)),
        "mean_ms": round(_micros(latency.group(3)) / 1000, 3),
        "max_ms": round(_micros(latency.group(2)) / 1000, 3),
    }


def grpc_answers(health_port: int) -> dict[str, float]:
    """The server's count of gRPC answers by status (its merged /metrics)."""
    url = f"http://{HOST}:{health_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("fastinfer_requests_total{") and 'protocol="grpc"' in line:
            status = re.search(r'status="(\d+)"', line)
            if status:
                counts[status.group(1)] = counts.get(status.group(1), 0) + float(line.split()[-1])
    return counts


def measure(duration: int, connections: list[int], row_counts: list[int]) -> dict[str, Any]:
    wrk, h2load = ensure_wrk(), ensure_h2load()
    BODIES.mkdir(parents=True, exist_ok=True)
    grpc_port = servers.free_port()
    spec = servers.fastinfer_spec([TITANIC_DIR], WORKERS, with_workers_option=True)
    spec.argv += ["--grpc-port", str(grpc_port)]
    server = servers.start(spec)
    points: list[dict[str, Any]] = []
    try:
        servers.wait_ready(server)
        for rows_count in row_counts:
            rows = _rows(rows_count)
            rest = BODIES / f"rest-{rows_count}.json"
            rest.write_bytes(rest_body(rows))
            bodies = {}
            for variant, raw in (("grpc contents", False), ("grpc raw", True)):
                message = grpc_message(rows, raw=raw)
                check_grpc(grpc_port, message)
                payload = message.SerializeToString()
                path = BODIES / f"{variant.replace(' ', '-')}-{rows_count}.bin"
                path.write_bytes(b"\0" + len(payload).to_bytes(4, "big") + payload)
                bodies[variant] = path
            run_wrk(wrk, server.port, f"/v2/models/{MODEL}/infer", rest, 8, 2)  # warm
            for count in connections:
                run = run_wrk(wrk, server.port, f"/v2/models/{MODEL}/infer", rest, count, duration)
                points.append(_point("REST v2 JSON", rows_count, count, run["req_per_s"], run))
                for variant, path in bodies.items():
                    before = grpc_answers(server.probe_port)
                    run = run_h2load(h2load, grpc_port, path, count, duration)
                    time.sleep(1.5)  # the workers' metrics reach the merged view
                    after = grpc_answers(server.probe_port)
                    run["server_answers"] = {
                        s: after.get(s, 0) - before.get(s, 0)
                        for s in after
                        if after[s] != before.get(s, 0)
                    }
                    points.append(_point(variant, rows_count, count, run["req_per_s"], run))
    finally:
        servers.stop(server)
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_s": duration,
        "workers": WORKERS,
        "model": MODEL,
        "points": points,
    }


def _point(protocol: str, rows: int, connections: int, rate: float, run: dict) -> dict:
    point = {
        "protocol": protocol,
        "rows": rows,
        "connections": connections,
        "requests_per_s": rate,
        "rows_per_s": round(rate * rows, 1),
        "run": run,
    }
    print(json.dumps({k: v for k, v in point.items() if k != "run"}), flush=True)
    return point


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"v2 over REST and gRPC: {result['model']}, {result['workers']} server processes, "
        f"{result['duration_s']} s per point, closed loop ({result['measured_at']}).",
        "",
        "| protocol | rows/request | connections | requests/s | rows/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for p in result["points"]:
        lines.append(
            f"| {p['protocol']} | {p['rows']} | {p['connections']} | "
            f"{p['requests_per_s']:,.0f} | {p['rows_per_s']:,.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.grpc_v2", description=__doc__)
    parser.add_argument("--duration", type=int, default=int(os.environ.get("BENCH_DURATION", "10")))
    parser.add_argument("--connections", default="1,32")
    parser.add_argument("--rows", default="1,32")
    args = parser.parse_args(argv)
    connections = [int(c) for c in args.connections.split(",")]
    rows = [int(r) for r in args.rows.split(",")]
    result = measure(args.duration, connections, rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "grpc.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (RESULTS / "grpc.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
