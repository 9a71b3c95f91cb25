"""Targets, docs/benchmarks.md and docs/benchmarks.png from the raw results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SERVER_LABELS = {
    "fastinfer": "fastinfer",
    "naive": "naive FastAPI",
    "floor": "HTTP floor (raw ASGI)",
}
SERVER_COLORS = {"fastinfer": "tab:blue", "naive": "tab:orange", "floor": "tab:gray"}
MODEL_TITLES = {
    "titanic": "Titanic (scikit-learn pipeline, 11 mixed columns)",
    "mlp": "MLP (ONNX, float32 256 → 1024 → 1024 → 10)",
    "tabular": "Tabular (bare scikit-learn ColumnTransformer → LogisticRegression, 7 columns)",
}
RATIO_CONNECTIONS = 32
NA = "n/a"
BUSY_PCT = 10.0  # % of one core taken by other processes that makes a point suspect
PROBE_CONNECTIONS = 128


def _points(results: dict[str, Any], server: str) -> list[dict[str, Any]]:
    points: list[dict[str, Any]] = results.get("servers", {}).get(server, {}).get("points", [])
    return points


def find_point(
    results: dict[str, Any], server: str, model: str, rows: int, connections: int
) -> dict[str, Any] | None:
    for point in _points(results, server):
        if (point["model"], point["rows"], point["connections"]) == (model, rows, connections):
            return point
    return None


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return NA
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def ratios(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The two ratios the targets use, per model."""
    out: dict[str, dict[str, Any]] = {}
    for model in results["meta"]["models"]:
        fast1 = find_point(results, "fastinfer", model, 1, RATIO_CONNECTIONS)
        floor1 = find_point(results, "floor", model, 1, RATIO_CONNECTIONS)
        fast32 = find_point(results, "fastinfer", model, 32, RATIO_CONNECTIONS)
        limit = results.get("inprocess", {}).get(model, {}).get("rows_per_s")
        entry: dict[str, Any] = {"vs_floor": None, "vs_inprocess": None}
        if fast1 and floor1 and floor1["req_per_s"]:
            entry["vs_floor"] = fast1["req_per_s"] / floor1["req_per_s"]
            entry["fastinfer_req_per_s"] = fast1["req_per_s"]
            entry["floor_req_per_s"] = floor1["req_per_s"]
        if fast32 and limit:
            entry["vs_inprocess"] = fast32["rows_per_s"] / limit
            entry["fastinfer_rows_per_s"] = fast32["rows_per_s"]
            entry["inprocess_rows_per_s"] = limit
        out[model] = entry
    return out


# Issue 15's targets: each model's 1-row share of the HTTP floor, and which models' 32-row
# requests are held to 60% of the in-process limit.
FLOOR_SHARE_TARGETS = {"tabular": 0.25, "titanic": 0.35, "mlp": 0.50}
INPROCESS_SHARE_MODELS = ("titanic", "mlp")


def _target(name: str, measured: str, met: bool | None) -> dict[str, Any]:
    return {"target": name, "measured": measured, "met": met}


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the issue with fastinfer's measured figure and met / missed / unmeasured."""
    models: list[str] = results["meta"]["models"]
    found = ratios(results)
    targets: list[dict[str, Any]] = []
    for model in models:
        r, share = found[model]["vs_floor"], FLOOR_SHARE_TARGETS.get(model, 0.25)
        targets.append(
            _target(
                f"{model}: 1-row req/s at {RATIO_CONNECTIONS} connections ≥ {share:.0%} of the "
                "floor",
                NA if r is None else f"{100 * r:.1f}%",
                None if r is None else r >= share,
            )
        )
    tabular = find_point(results, "fastinfer", "tabular", 1, RATIO_CONNECTIONS)
    if tabular:
        p99 = tabular["latency_ms"]["p99"]
        targets.append(
            _target(
                f"tabular: 1-row p99 at {RATIO_CONNECTIONS} connections ≤ 10 ms",
                f"{p99:.1f} ms",
                p99 <= 10.0,
            )
        )
    for model in (m for m in models if m in INPROCESS_SHARE_MODELS):
        r = found[model]["vs_inprocess"]
        targets.append(
            _target(
                f"{model}: 32-row rows/s at {RATIO_CONNECTIONS} connections ≥ 60% of the "
                "in-process limit",
                NA if r is None else f"{100 * r:.1f}%",
                None if r is None else r >= 0.60,
            )
        )
    at32 = [p for p in _points(results, "fastinfer") if p["connections"] == RATIO_CONNECTIONS]
    if at32:
        worst = max(at32, key=lambda p: p["latency_ms"]["p99"])
        p99 = worst["latency_ms"]["p99"]
        targets.append(
            _target(
                f"p99 ≤ 25 ms at {RATIO_CONNECTIONS} connections (worst of every model and size)",
                f"{p99:.1f} ms ({worst['model']}, {worst['rows']} rows)",
                p99 <= 25.0,
            )
        )
    else:
        targets.append(_target(f"p99 ≤ 25 ms at {RATIO_CONNECTIONS} connections", NA, None))
    at128 = [p for p in _points(results, "fastinfer") if p["connections"] == PROBE_CONNECTIONS]
    if at128:
        failed = sum(p["probe"]["failed"] for p in at128)
        probes = sum(p["probe"]["probes"] for p in at128)
        worst = max(at128, key=lambda p: p["probe"]["p99_ms"] or 0.0)
        p99 = worst["probe"]["p99_ms"]
        targets.append(
            _target(
                f"at {PROBE_CONNECTIONS} connections: zero failed /livez probes",
                f"{failed} of {probes} failed",
                failed == 0,
            )
        )
        targets.append(
            _target(
                f"at {PROBE_CONNECTIONS} connections: /livez probe p99 ≤ 10 ms",
                f"{_fmt(p99)} ms (worst: {worst['model']}, {worst['rows']} rows)",
                p99 is not None and p99 <= 10.0,
            )
        )
        main = [p["probe_main_port"] for p in at128 if p.get("probe_main_port")]
        if main:
            main_failed = sum(m["failed"] for m in main)
            main_p99 = max((m["p99_ms"] or 0.0) for m in main)
            targets.append(
                _target(
                    f"(for reference) at {PROBE_CONNECTIONS} connections: /livez on the serving "
                    "port, answered by the busy workers themselves",
                    f"{main_failed} failed, worst p99 {_fmt(main_p99)} ms",
                    None,
                )
            )
    else:
        targets.append(_target(f"at {PROBE_CONNECTIONS} connections: no failed probes", NA, None))
        targets.append(_target(f"at {PROBE_CONNECTIONS} connections: probe p99 ≤ 10 ms", NA, None))
    fast = results.get("servers", {}).get("fastinfer", {})
    idle = (fast.get("idle_cpu") or {}).get("cpu_percent_total")
    targets.append(
        _target(
            "idle CPU < 1% (all fastinfer processes, % of one core)",
            NA if idle is None else f"{idle:.2f}%",
            None if idle is None else idle < 1.0,
        )
    )
    startup = fast.get("startup_s")
    targets.append(
        _target(
            "startup to ready ≤ 1.5 s (spawn → first 200 from /readyz)",
            NA if startup is None else f"{startup:.2f} s",
            None if startup is None else startup <= 1.5,
        )
    )
    return targets


def _verdict(met: bool | None) -> str:
    return {True: "**met**", False: "**missed**", None: "not measured"}[met]


def _model_table(results: dict[str, Any], model: str) -> list[str]:
    lines = [
        "| server | connections | rows/request | req/s | rows/s | p50 ms | p99 ms | errors "
        "| probe failures | probe p99 ms | CPU %: server / wrk / other |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for server in results["meta"]["servers"]:
        info = results["servers"].get(server, {})
        if "error" in info:
            lines.append(f"| {SERVER_LABELS[server]} | failed: {_one_line(info['error'])} |")
        for point in _points(results, server):
            if point["model"] != model:
                continue
            lat, probe = point["latency_ms"], point["probe"]
            lines.append(
                f"| {SERVER_LABELS[server]} | {point['connections']} | {point['rows']} "
                f"| {_fmt(point['req_per_s'])} | {_fmt(point['rows_per_s'])} "
                f"| {_fmt(lat['p50'], 2)} | {_fmt(lat['p99'], 2)} | {point['errors_total']} "
                f"| {probe['failed']} of {probe['probes']} | {_fmt(probe['p99_ms'], 2)} "
                f"| {_cpu_cell(point)} |"
            )
    return lines


def _one_line(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split()).replace("|", "\\|")
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _cpu_cell(point: dict[str, Any]) -> str:
    cpu = point.get("cpu")
    if not cpu:
        return NA
    other = f"{cpu['other_pct']:.0f}"
    if cpu["other_pct"] > BUSY_PCT:
        other = f"**{other}**"
    return f"{cpu['server_pct']:.0f} / {cpu['load_generator_pct']:.0f} / {other}"


def busy_points(results: dict[str, Any]) -> list[str]:
    """The points during which other processes took more than BUSY_PCT of a core."""
    found = []
    for server in results["meta"]["servers"]:
        for p in _points(results, server):
            if (p.get("cpu") or {}).get("other_pct", 0.0) > BUSY_PCT:
                found.append(f"{server} {p['model']} {p['rows']} rows c{p['connections']}")
    return found


def _inprocess_lines(results: dict[str, Any], model: str) -> list[str]:
    info = results.get("inprocess", {}).get(model)
    if not info:
        return ["In-process limit: not measured."]
    if "error" in info:
        return [f"In-process limit: failed ({info['error']})."]
    lines = [
        f"In-process limit: **{_fmt(info['rows_per_s'])} rows/s** (batch of "
        f"{info['batch_size']}, {info['processes']} process(es)). rows/s by batch size:",
        "",
        "| processes | " + " | ".join(f"batch {b}" for b in info["runs"][0]["batch_sizes"]) + " |",
        "|---:|" + "---:|" * len(info["runs"][0]["batch_sizes"]),
    ]
    for run in info["runs"]:
        if "error" in run:
            lines.append(f"| {run['processes']} | failed: {run['error']} |")
            continue
        cells = " | ".join(_fmt(v["rows_per_s"]) for v in run["batch_sizes"].values())
        lines.append(f"| {run['processes']} | {cells} |")
    return lines


def _memory(text: str) -> str:
    """'24684092 kB' → '23.5 GiB'."""
    parts = text.split()
    if len(parts) == 2 and parts[0].isdigit() and parts[1] == "kB":
        return f"{int(parts[0]) / 1024**2:.1f} GiB"
    return text


def _mib(kb: float | None) -> str:
    return NA if kb is None else f"{kb / 1024:.0f}"


def _resources_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| server | processes | startup to ready s | RSS MiB (ready → after load) "
        "| PSS MiB (ready → after load) | idle CPU % of one core |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for server in results["meta"]["servers"]:
        info = results["servers"].get(server, {})
        if "error" in info and "startup_s" not in info:
            lines.append(f"| {SERVER_LABELS[server]} | failed: {_one_line(info['error'])} |")
            continue
        ready = info.get("memory_ready") or {}
        after = info.get("memory_after_load") or {}
        idle = (info.get("idle_cpu") or {}).get("cpu_percent_total")
        lines.append(
            f"| {SERVER_LABELS[server]} | {ready.get('count', NA)} "
            f"| {_fmt(info.get('startup_s'), 2)} "
            f"| {_mib(ready.get('rss_kb_total'))} → {_mib(after.get('rss_kb_total'))} "
            f"| {_mib(ready.get('pss_kb_total'))} → {_mib(after.get('pss_kb_total'))} "
            f"| {_fmt(idle, 2)} |"
        )
    return lines


def _per_process_lines(results: dict[str, Any]) -> list[str]:
    info = results.get("servers", {}).get("fastinfer", {})
    memory = (info.get("memory_after_load") or {}).get("processes") or []
    idle = {p["pid"]: p["cpu_percent"] for p in (info.get("idle_cpu") or {}).get("processes", [])}
    if not memory:
        return []
    lines = [
        "fastinfer's processes (after load):",
        "",
        "| pid | parent | command line | RSS MiB | PSS MiB | idle CPU % |",
        "|---:|---:|---|---:|---:|---:|",
    ]
    root = str(Path(__file__).resolve().parent.parent) + "/"
    for p in memory:
        cmd = p["cmdline"].replace(root, "").replace("|", "\\|")
        if len(cmd) > 70:
            cmd = cmd[:67] + "..."
        lines.append(
            f"| {p['pid']} | {p.get('ppid', NA)} | `{cmd}` | {_mib(p['rss_kb'])} "
            f"| {_mib(p['pss_kb'])} "
            f"| {_fmt(idle.get(p['pid']), 2)} |"
        )
    return lines


def _dropped_lines(meta: dict[str, Any]) -> list[str]:
    dropped: dict[str, str] = meta.get("dropped_models") or {}
    lines = [f"> **{m} was left out**: {_one_line(why, 300)}" for m, why in dropped.items()]
    return [*lines, ""] if lines else []


def _busy_warning(results: dict[str, Any]) -> list[str]:
    background = results["meta"].get("background_cpu_pct")
    busy = busy_points(results)
    if (background is None or background <= BUSY_PCT) and not busy:
        return []
    return [
        "> **Warning: the machine was not quiet.** Other processes used "
        f"{_fmt(background)}% of a core before the run started"
        + (
            f", and more than {BUSY_PCT:.0f}% of a core during {len(busy)} of the points "
            "(bold in the CPU column)"
            if busy
            else ""
        )
        + ". Those numbers understate every server; rerun on an idle machine before quoting them.",
        "",
    ]


def write_markdown(results: dict[str, Any], path: Path, plot_name: str | None) -> None:
    """docs/benchmarks.md: setup, targets, one table per model, resources, method."""
    meta = results["meta"]
    machine = meta["machine"]
    pkgs = machine["packages"]
    fast = results["servers"].get("fastinfer", {})
    versions = ", ".join(f"{k} {v}" for k, v in pkgs.items() if v)
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `make bench` on {machine['date']} (git {machine['git_revision']}); "
        "the raw numbers are in `bench/results/latest.json`. Regenerate, don't edit: the harness "
        "rewrites this file.",
        "",
        "## Setup",
        "",
        f"- **Machine**: {machine['cpu_model']}, {machine['cpu_count']} CPUs "
        f"({machine['cpus_usable']} usable), {_memory(machine['memory'])} memory, "
        f"{machine['os']}; "
        f"Python {machine['python']}.",
        f"- **Packages**: {versions}.",
        f"- **Load tool**: wrk {meta['wrk_version']}, closed loop, {meta['wrk_threads']} threads "
        f"(fewer when there are fewer connections), {meta['duration_s']} s per point after a "
        f"{meta['warmup_s']} s warm-up per workload, on the same machine as the servers "
        "(so the load generator takes CPU from them, equally for every server).",
        f"- **Command**: `{meta['command']}` (`{meta['argv']}`).",
        f"- **Worker processes**: {meta['workers']} for every server"
        + (
            ""
            if fast.get("workers") == meta["workers"] or not fast
            else f" (**fastinfer ran {fast.get('workers')}**: {fast.get('workers_note', '')})"
        )
        + ".",
        "- **Servers**: fastinfer (`fastinfer serve`, default settings, logs to a file); the "
        "naive FastAPI app `bench/apps/naive.py` (typed pydantic rows, sync `def` routes in the "
        "thread pool, a DataFrame / numpy array per request); the HTTP floor "
        "`bench/apps/floor.py` (raw ASGI: reads and parses the body with orjson, answers a "
        "precomputed response of the same shape). The two baselines run on uvicorn with "
        "uvloop, httptools, no access log.",
        "- **Probes**: while each point runs, a prober opens a new connection to `/livez` every "
        "100 ms with a 1 s timeout (as the kubelet does); a failed probe counts as 1000 ms in the "
        "probe percentiles. fastinfer is probed where Kubernetes probes it, its health port "
        "(`--health-port`: a separate process answering from every worker's heartbeat, see "
        "docs/operations.md); its serving port's `/livez` is probed at the same time and "
        "reported for reference. The baselines have one port.",
        "- **CPU column**: the server's process tree, wrk, and every other process on the machine "
        "during the point, in % of one core (from `/proc`); the harness itself (prober "
        "included) is left out. Before each point the harness waits up to "
        f"{meta.get('quiet_wait_s', 0):.0f} s for other processes to use less than "
        f"{BUSY_PCT:.0f}% of a core.",
        "",
        *_busy_warning(results),
        *_dropped_lines(meta),
        "## Targets (fastinfer)",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
    ]
    for t in results["targets"]:
        lines.append(f"| {t['target']} | {t['measured']} | {_verdict(t['met'])} |")
    lines.append("")
    found = ratios(results)
    for model in meta["models"]:
        r = found[model]
        if r["vs_floor"] is not None:
            lines.append(
                f"- {model}: fastinfer 1-row req/s ÷ floor 1-row req/s at {RATIO_CONNECTIONS} "
                f"connections = {_fmt(r['fastinfer_req_per_s'])} ÷ {_fmt(r['floor_req_per_s'])} "
                f"= **{r['vs_floor']:.3f}**"
            )
        if r["vs_inprocess"] is not None:
            lines.append(
                f"- {model}: fastinfer 32-row rows/s at {RATIO_CONNECTIONS} connections ÷ "
                f"in-process limit = {_fmt(r['fastinfer_rows_per_s'])} ÷ "
                f"{_fmt(r['inprocess_rows_per_s'])} = **{r['vs_inprocess']:.3f}**"
            )
    lines.append("")
    if plot_name:
        lines += [
            f"![throughput vs p99 latency, one panel per model]({plot_name})",
            "",
            "Throughput (rows/s) against p99 latency; each point is one connection count "
            "(1, 32, 128), solid lines 1-row requests, dashed 32-row requests; the dotted "
            "vertical line is the in-process limit.",
            "",
        ]
    for model in meta["models"]:
        lines += [f"## {MODEL_TITLES.get(model, model)}", ""]
        lines += _model_table(results, model)
        lines += ["", *_inprocess_lines(results, model), ""]
    lines += ["## Resources", "", *_resources_table(results), ""]
    per_process = _per_process_lines(results)
    if per_process:
        lines += [*per_process, ""]
    lines += [
        "## Method",
        "",
        "- Everything runs on 127.0.0.1; each server is a real process tree on a free port, "
        "started, measured and stopped one at a time.",
        "- Request bodies: the first 1 or 32 passengers of `examples/titanic/holdout.csv`; 1 or "
        "32 rows of 256 seeded standard-normal float32 values (7 significant digits) for the MLP. "
        "Before measuring, each server's answer to each body is checked (200 and one prediction "
        "per row).",
        "- req/s and latency percentiles come from wrk's `done()` hook "
        "(`bench/wrk/post.lua`); rows/s = req/s x rows per request; errors = connect + read + "
        "write + timeout (5 s) + non-2xx/3xx responses.",
        "- In-process limit (`bench/inprocess.py`): the model loaded with "
        "`fastinfer.repository.local.load_local`, rows validated once, then "
        "`model.runtime.predict(rows, model.schema.columns)` timed back to back for batch sizes "
        f"{', '.join(str(b) for b in meta['batch_sizes'])} ({meta['inprocess_seconds']} s "
        f"each), once in 1 process and once in {meta['workers']} spawned processes that start "
        "each batch size together (a barrier) and whose rows/s are added. The limit is the best "
        "of all of those.",
        "- Startup: spawn → first 200 from `/readyz` (polled every 10 ms). Memory: RSS "
        "(`/proc/PID/statm`) and PSS (`/proc/PID/smaps_rollup`) summed over the server's process "
        "tree (found through `/proc`), at ready and after the load. Idle CPU: utime + stime "
        "(`/proc/PID/stat`) of the tree over 5 s with no load, 2 s after the last load, in % of "
        "one core (one clock tick over 5 s is 0.2%).",
        "- `make bench` is run by hand, never in CI: `BENCH_DURATION=3 make bench` is a quick "
        "pass; `.venv/bin/python -m bench.run --help` lists the options (servers, models, "
        "connections, workers, duration).",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")


def write_plot(results: dict[str, Any], path: Path) -> bool:
    """Throughput vs p99, one panel per model, one line per server and request size."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models: list[str] = results["meta"]["models"]
    fig, axes = plt.subplots(1, len(models), figsize=(6.5 * len(models), 5.8), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        for server in results["meta"]["servers"]:
            for rows, style, marker in ((1, "-", "o"), (32, "--", "s")):
                pts = sorted(
                    (
                        p
                        for p in _points(results, server)
                        if (p["model"], p["rows"]) == (model, rows)
                    ),
                    key=lambda p: p["connections"],
                )
                if not pts:
                    continue
                xs = [max(p["rows_per_s"], 0.1) for p in pts]
                ys = [max(p["latency_ms"]["p99"], 0.01) for p in pts]
                ax.plot(
                    xs,
                    ys,
                    style,
                    marker=marker,
                    color=SERVER_COLORS[server],
                    label=f"{SERVER_LABELS[server]}, {rows} row{'s' if rows > 1 else ''}/req",
                )
                for p, x, y in zip(pts, xs, ys, strict=True):
                    ax.annotate(
                        f"c{p['connections']}",
                        (x, y),
                        textcoords="offset points",
                        xytext=(4, 4),
                        fontsize=7,
                        color=SERVER_COLORS[server],
                    )
        limit = results.get("inprocess", {}).get(model, {}).get("rows_per_s")
        if limit:
            ax.axvline(limit, color="black", linestyle=":", linewidth=1)
            ax.annotate(
                "in-process limit",
                (limit, 0.02),
                xycoords=("data", "axes fraction"),
                xytext=(-3, 0),
                textcoords="offset points",
                ha="right",
                va="bottom",
                rotation=90,
                fontsize=8,
            )
        ax.axhline(25, color="tab:red", linestyle=":", linewidth=1)
        ax.annotate(
            "p99 target 25 ms",
            (0.0, 25),
            xycoords=("axes fraction", "data"),
            xytext=(4, 3),
            textcoords="offset points",
            fontsize=8,
            color="tab:red",
        )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("throughput, rows/s (log)")
        ax.set_ylabel("p99 latency, ms (log)")
        ax.set_title(MODEL_TITLES.get(model, model), fontsize=10)
        ax.grid(True, which="both", alpha=0.25)
    handles: dict[str, Any] = {}
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    fig.legend(
        list(handles.values()),
        list(handles),
        loc="lower center",
        ncol=3,
        fontsize=8,
        frameon=False,
    )
    meta = results["meta"]
    fig.suptitle(
        f"{meta['machine']['cpu_model']}, {meta['machine']['cpu_count']} CPUs, "
        f"{meta['workers']} workers, wrk {meta['duration_s']} s per point",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> None:
    """Re-render the report from a results file: `python -m bench.report [JSON] [MARKDOWN]`."""
    import sys

    import orjson

    args = sys.argv[1:] if argv is None else argv
    root = Path(__file__).resolve().parent.parent
    source = Path(args[0]) if args else root / "bench" / "results" / "latest.json"
    markdown = Path(args[1]) if len(args) > 1 else root / "docs" / "benchmarks.md"
    results = orjson.loads(source.read_bytes())
    results["ratios"] = ratios(results)
    results["targets"] = evaluate_targets(results)
    plot = markdown.with_suffix(".png")
    write_markdown(results, markdown, plot.name if write_plot(results, plot) else None)
    print(f"wrote {markdown}")


if __name__ == "__main__":
    main()
