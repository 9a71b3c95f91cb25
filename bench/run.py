"""`make bench`: fastinfer against a naive FastAPI app and the HTTP floor, on this machine.

    .venv/bin/python -m bench.run [--duration 10] [--workers N] [--servers fastinfer,naive,floor]
                                  [--models titanic,mlp,tabular] [--connections 1,32,128]

Builds the models, measures each model's in-process limit, then starts each server in turn on a
free 127.0.0.1 port, drives it with wrk while probing /livez, and writes
bench/results/latest.json, docs/benchmarks.md and docs/benchmarks.png. Run by hand, never in CI.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

import orjson

from bench import load, report, servers
from bench.common import (
    BUILD,
    MLP_DIR,
    RESULTS,
    ROOT,
    TABULAR_DIR,
    Workload,
    http_request,
    machine_facts,
    model_dir,
    model_rows,
    quiet_logging,
    write_bodies,
)
from bench.cpu import CpuSnapshot, background_cpu, load_average, wait_for_quiet
from bench.inprocess import BATCH_SIZES, in_process_limit
from bench.probe import Prober

MODELS = ("titanic", "mlp", "tabular")
DEFAULT_MODELS = MODELS  # tabular: issue 15's bare ColumnTransformer pipeline
ROWS_PER_REQUEST = (1, 32)
CONNECTIONS = (1, 32, 128)
WARMUP_CONNECTIONS = 32
IDLE_SETTLE_S = 2.0
IDLE_SECONDS = 5.0
INPROCESS_ROWS = 512
DOCS = ROOT / "docs"
BACKGROUND_SECONDS = 3.0
BUSY_PCT = report.BUSY_PCT


def _csv(kind: type, allowed: tuple[Any, ...] | None = None) -> Any:
    def parse(text: str) -> list[Any]:
        values = [kind(v.strip()) for v in text.split(",") if v.strip()]
        if not values:
            raise argparse.ArgumentTypeError("give at least one value")
        bad = [v for v in values if allowed is not None and v not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown: {bad}; choose from {list(allowed or ())}")
        return values

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    env_duration = os.environ.get("BENCH_DURATION", "10")
    env_workers = os.environ.get("BENCH_WORKERS") or str(os.cpu_count() or 1)
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument(
        "--duration",
        type=int,
        default=int(env_duration),
        help="seconds of load per point [env BENCH_DURATION, default 10]",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=int(env_workers),
        help="server processes for every server [env BENCH_WORKERS, default: CPU count]",
    )
    parser.add_argument(
        "--servers",
        type=_csv(str, servers.SERVERS),
        default=list(servers.SERVERS),
        help="comma-separated: fastinfer,naive,floor",
    )
    parser.add_argument(
        "--models",
        type=_csv(str, MODELS),
        default=list(DEFAULT_MODELS),
        help="comma-separated: titanic,mlp,tabular [default: all three]",
    )
    parser.add_argument(
        "--connections",
        type=_csv(int),
        default=list(CONNECTIONS),
        help="comma-separated wrk connection counts [default 1,32,128]",
    )
    parser.add_argument(
        "--rows",
        type=_csv(int),
        default=list(ROWS_PER_REQUEST),
        help="comma-separated rows per request [default 1,32]",
    )
    parser.add_argument(
        "--inprocess-seconds",
        type=float,
        default=None,
        help="seconds per batch size for the in-process limit [default: duration / 4, 0.5-3]",
    )
    parser.add_argument("--skip-inprocess", action="store_true", help="skip the in-process limit")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=30.0,
        help="before each point, wait up to this many seconds for other processes to leave the "
        "CPU idle (0: don't wait) [default 30]",
    )
    parser.add_argument(
        "--output", type=Path, default=RESULTS / "latest.json", help="where the raw JSON goes"
    )
    parser.add_argument(
        "--markdown", type=Path, default=DOCS / "benchmarks.md", help="where the report goes"
    )
    args = parser.parse_args(argv)
    if args.duration < 1 or args.workers < 1 or min(args.connections) < 1 or min(args.rows) < 1:
        parser.error("duration, workers, connections and rows must be at least 1")
    return args


def build_models(models: list[str]) -> None:
    """The example models (committed; `make models` checks their pins) and the ONNX MLP model
    directory under bench/build."""
    if "titanic" in models:
        print("bench: make models")
        make = ["make", "--no-print-directory", "models"]
        built = subprocess.run(make, cwd=ROOT, timeout=1800, check=False)
        if built.returncode != 0:
            print("bench: WARNING: `make models` failed; going on with the artefacts as they are")
    if "mlp" in models:
        try:
            from bench.models.mlp import build_mlp_model_dir
        except ImportError as exc:
            raise SystemExit(f"bench: bench/models/mlp.py is not usable yet: {exc}") from None
        build_mlp_model_dir(MLP_DIR)
        print(f"bench: built the MLP model directory in {MLP_DIR.relative_to(ROOT)}")
    if "tabular" in models:
        from bench.models.tabular import build_tabular_model_dir

        build_tabular_model_dir(TABULAR_DIR)
        print(f"bench: built the tabular model directory in {TABULAR_DIR.relative_to(ROOT)}")


def check_models(models: list[str]) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Load each model as fastinfer does: its answer to row 0 (for the floor), or why it fails."""
    from fastinfer.model.spec import load_model_directory
    from fastinfer.repository.local import load_local

    answers: dict[str, dict[str, Any]] = {}
    failures: dict[str, str] = {}
    for model in models:
        try:
            served = load_local(load_model_directory(model_dir(model)))
            assert served.schema is not None and served.runtime is not None
            rows = served.schema.validate_rows(model_rows(model, 1))
            (prediction,) = served.runtime.predict(rows, served.schema.columns)
            answers[model] = {
                "model": served.name,
                "version": served.version,
                "prediction": prediction,
            }
        except Exception as exc:
            failures[model] = f"{type(exc).__name__}: {exc}"
            print(f"bench: fastinfer cannot load {model}: {failures[model]}")
    return answers, failures


def check_answers(server: servers.RunningServer, workloads: list[Workload]) -> dict[str, str]:
    """POST each body once: 200 and one prediction per row, or the reason it is not."""
    problems: dict[str, str] = {}
    for w in workloads:
        key = f"{w.model}-{w.rows}"
        try:
            result = http_request(server.port, "POST", w.path, w.body_path.read_bytes(), 30.0)
        except OSError as exc:
            problems[key] = f"{type(exc).__name__}: {exc}"
            continue
        if result.status != 200:
            problems[key] = f"status {result.status}: {result.body[:300]!r}"
            continue
        predictions = orjson.loads(result.body).get("predictions")
        if not isinstance(predictions, list) or len(predictions) != w.rows:
            problems[key] = f"expected {w.rows} predictions, got {result.body[:200]!r}"
    return problems


def bench_server(
    spec: servers.ServerSpec,
    workloads: list[Workload],
    connections: list[int],
    args: argparse.Namespace,
    wrk: str,
    warmup_s: int,
) -> dict[str, Any]:
    """Start one server, measure everything on it, stop it (always)."""
    outcome: dict[str, Any] = {
        "command": shlex.join(spec.argv).replace("'{port}'", "PORT"),
        "workers": spec.workers,
        "load_average_before": load_average(),
    }
    print(f"bench: starting {spec.name}: {outcome['command']}")
    server = servers.start(spec)
    try:
        outcome["startup_s"] = round(servers.wait_ready(server), 3)
        print(f"bench: {spec.name} ready in {outcome['startup_s']:.2f} s on port {server.port}")
        time.sleep(0.5)
        outcome["memory_ready"] = servers.memory_report(server)
        problems = check_answers(server, workloads)
        if problems:
            outcome["answer_problems"] = problems
            print(f"bench: {spec.name} answers wrongly, skipping those workloads: {problems}")
        usable = [w for w in workloads if f"{w.model}-{w.rows}" not in problems]
        for w in usable:
            load.run_wrk(wrk, server.port, w.path, w.body_path, WARMUP_CONNECTIONS, warmup_s)
        points: list[dict[str, Any]] = []
        for w in usable:
            for conns in connections:
                quiet = wait_for_quiet(args.quiet_wait, BUSY_PCT) if args.quiet_wait else None
                before = CpuSnapshot.take(servers.process_tree(server.pid))
                with Prober(server.probe_port) as prober, Prober(server.port) as main_prober:
                    result = load.run_wrk(
                        wrk, server.port, w.path, w.body_path, conns, args.duration
                    )
                cpu = before.until(CpuSnapshot.take(list(before.server)))
                probe = prober.summary()
                lat = {k: v / 1000 for k, v in result["latency_us"].items()}
                point = {
                    "model": w.model,
                    "rows": w.rows,
                    "connections": conns,
                    "req_per_s": result["req_per_s"],
                    "rows_per_s": round(result["req_per_s"] * w.rows, 1),
                    "latency_ms": lat,
                    "errors_total": result["errors_total"],
                    "errors": result["errors"],
                    "requests": result["requests"],
                    "seconds": result["seconds"],
                    "probe": probe,
                    "probe_main_port": main_prober.summary(),
                    "cpu": cpu,
                    "busy_before_pct": quiet,
                    "wrk_command": result["command"],
                }
                points.append(point)
                print(
                    f"bench: {spec.name:9} {w.model:7} {w.rows:>2} rows c{conns:<3} "
                    f"{point['req_per_s']:>9.1f} req/s {point['rows_per_s']:>10.1f} rows/s "
                    f"p50 {lat['p50']:7.2f} ms p99 {lat['p99']:7.2f} ms "
                    f"errors {point['errors_total']} probes {probe['failed']}/{probe['probes']} "
                    f"failed, p99 {probe['p99_ms']} ms; CPU % server {cpu['server_pct']} "
                    f"wrk {cpu['load_generator_pct']} other {cpu['other_pct']}"
                )
                if server.proc.poll() is not None:
                    raise RuntimeError(f"{spec.name} exited ({server.proc.returncode}) under load")
        outcome["points"] = points
        time.sleep(IDLE_SETTLE_S)
        outcome["idle_cpu"] = servers.idle_cpu(server, IDLE_SECONDS)
        outcome["memory_after_load"] = servers.memory_report(server)
    except Exception as exc:
        outcome["error"] = f"{type(exc).__name__}: {exc}"
        print(f"bench: {spec.name} failed: {outcome['error']}")
    finally:
        outcome["exit_status"] = servers.stop(server)
        outcome["log"] = str(server.log_path.relative_to(ROOT))
    return outcome


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with it ignored
    signal.signal(signal.SIGTERM, _raise_interrupt)  # stop servers on `kill` as on Ctrl-C
    started = time.perf_counter()
    models: list[str] = args.models
    quiet_logging()
    build_models(models)
    wrk = load.ensure_wrk()
    answers, dropped = check_models(models)
    models = [m for m in models if m not in dropped]
    if not models:
        raise SystemExit(f"bench: no model can be loaded: {dropped}")
    BUILD.mkdir(parents=True, exist_ok=True)
    workloads = write_bodies(models, args.rows)
    warmup_s = max(1, min(2, args.duration))
    inprocess_s = args.inprocess_seconds or max(0.5, min(3.0, args.duration / 4))
    argv_line = shlex.join([".venv/bin/python", "-m", "bench.run", *sys.argv[1:]])
    if os.environ.get("MAKELEVEL"):  # run by `make bench`
        names = ("BENCH_DURATION", "BENCH_WORKERS")
        env = [f"{k}={os.environ[k]}" for k in names if k in os.environ]
        command = " ".join([*env, "make bench"])
    else:
        command = argv_line
    results: dict[str, Any] = {
        "meta": {
            "machine": machine_facts(),
            "wrk_version": load.wrk_version(wrk),
            "wrk_threads": load.WRK_THREADS,
            "wrk_timeout": load.WRK_TIMEOUT,
            "duration_s": args.duration,
            "warmup_s": warmup_s,
            "workers": args.workers,
            "servers": args.servers,
            "models": models,
            "dropped_models": dropped,
            "connections": args.connections,
            "rows_per_request": args.rows,
            "batch_sizes": list(BATCH_SIZES),
            "inprocess_seconds": inprocess_s,
            "quiet_wait_s": args.quiet_wait,
            "busy_threshold_pct": BUSY_PCT,
            "command": command,
            "argv": argv_line,
        },
        "inprocess": {},
        "servers": {},
    }
    background = background_cpu(BACKGROUND_SECONDS)
    results["meta"]["background_cpu_pct"] = background
    results["meta"]["load_average_at_start"] = load_average()
    if background > BUSY_PCT:
        print(
            f"bench: WARNING: the machine is busy before the benchmark starts ({background:.0f}% "
            "of a core used by other processes): the numbers will not be reliable"
        )

    if not args.skip_inprocess:
        for model in models:
            if args.quiet_wait:
                wait_for_quiet(args.quiet_wait, BUSY_PCT)
            print(f"bench: in-process limit of {model} ({inprocess_s:.1f} s per batch size)")
            limit = in_process_limit(
                model_dir(model),
                model_rows(model, INPROCESS_ROWS, exact=False),
                args.workers,
                inprocess_s,
            )
            results["inprocess"][model] = limit
            print(
                f"bench: {model}: {limit.get('rows_per_s', limit.get('error'))} rows/s "
                f"(batch {limit.get('batch_size')}, {limit.get('processes')} process(es))"
            )

    answers_file = BUILD / "floor_answers.json"
    answers_file.write_bytes(orjson.dumps(answers, option=orjson.OPT_INDENT_2))
    dirs = {m: model_dir(m) for m in models}
    for name in args.servers:
        extra: dict[str, Any] = {}
        if name == "fastinfer":
            has_workers = servers.fastinfer_supports_workers()
            spec = servers.fastinfer_spec(list(dirs.values()), args.workers, has_workers)
            if not has_workers:
                extra["workers_note"] = "this checkout's `fastinfer serve` has no --workers yet"
        elif name == "naive":
            spec = servers.naive_spec(dirs, args.workers)
        else:
            spec = servers.floor_spec(answers_file, args.workers)
        outcome = bench_server(spec, workloads, args.connections, args, wrk, warmup_s)
        results["servers"][name] = {**extra, **outcome}

    results["ratios"] = report.ratios(results)
    results["targets"] = report.evaluate_targets(results)
    results["meta"]["wall_seconds"] = round(time.perf_counter() - started, 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
    plot_path = args.markdown.with_suffix(".png")
    plotted = report.write_plot(results, plot_path)
    report.write_markdown(results, args.markdown, plot_path.name if plotted else None)
    print(f"bench: wrote {args.output}, {args.markdown}" + (f", {plot_path}" if plotted else ""))
    for t in results["targets"]:
        verdict = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
        print(f"bench: {verdict:>12}  {t['target']}: {t['measured']}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("bench: interrupted; every server it started has been stopped", file=sys.stderr)
        sys.exit(130)
