"""`fastinfer loadtest`: closed-loop load on a running server over a sweep of concurrencies, so
an operator can see its throughput and latency curve without installing wrk or writing Lua."""

from __future__ import annotations

import asyncio
import http.client
import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fastinfer import __version__
from fastinfer.cli.loadgen import LevelStats, Target, event_loop_factory, run_level

_PLOT_HINT = "the plot needs matplotlib: pip install matplotlib"
_TIMING_SHOWN = ("queue", "batch-wait", "infer")


class LoadTestError(Exception):
    """The load test cannot start: a bad option, or the server's metadata is unusable."""


def parse_concurrency(text: str) -> list[int]:
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise LoadTestError(f"--concurrency: integers separated by commas, not {text!r}") from None
    if not levels or min(levels) < 1:
        raise LoadTestError("--concurrency: at least one level, each 1 or more")
    return levels


def parse_headers(values: list[str]) -> list[tuple[str, str]]:
    headers = []
    for raw in values:
        name, sep, value = raw.partition(":")
        if not sep or not name.strip() or any(c in raw for c in "\r\n"):
            raise LoadTestError(f"--header: 'Name: value', not {raw!r}")
        headers.append((name.strip(), value.strip()))
    return headers


def _split_url(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise LoadTestError(
            f"{url}: only http:// URLs (load a replica directly, not through a TLS proxy)"
        )
    if not parts.hostname:
        raise LoadTestError(f"{url}: no host")
    return parts.hostname, parts.port or 80, parts.path.rstrip("/")


def fetch_metadata(
    host: str, port: int, path: str, headers: list[tuple[str, str]], timeout: float
) -> dict[str, Any]:
    """`GET /v1/models/{name}`: the example row and the most rows a request may carry."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", path, headers=dict(headers))
        response = connection.getresponse()
        body = response.read()
    except OSError as exc:
        raise LoadTestError(f"cannot reach http://{host}:{port}: {exc}") from exc
    finally:
        connection.close()
    if response.status != 200:
        raise LoadTestError(f"GET {path} answered {response.status}: {body[:300]!r}")
    metadata: dict[str, Any] = orjson.loads(body)
    return metadata


def build_body(metadata: dict[str, Any], rows: int) -> bytes:
    example = metadata.get("example")
    if not isinstance(example, dict):
        raise LoadTestError(
            f"model {metadata.get('name')!r} has no example row in its model.yaml: "
            "give a request body with --body FILE"
        )
    limit = metadata.get("max_rows") or 0
    if limit and rows > limit:
        raise LoadTestError(f"--rows {rows}: the model takes at most {limit} rows per request")
    return orjson.dumps({"inputs": [example] * rows})


def rows_in(body: bytes) -> int | None:
    """Rows in a v1 request body, for rows/s; None when the body is not one (then no rows/s)."""
    try:
        inputs = orjson.loads(body).get("inputs")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return len(inputs) if isinstance(inputs, list) else None


def encode_request(
    host: str, port: int, path: str, body: bytes, headers: list[tuple[str, str]]
) -> bytes:
    """The whole POST, encoded once and written as is for every request. A --header replaces
    the default of the same name (Host, User-Agent, Content-Type)."""
    given = {name.lower() for name, _ in headers}
    if "content-length" in given or "transfer-encoding" in given:
        raise LoadTestError("--header: Content-Length and Transfer-Encoding come from the body")
    defaults = {
        "Host": f"{host}:{port}",
        "User-Agent": f"fastinfer-loadtest/{__version__}",
        "Content-Type": "application/json",
    }
    lines = [
        f"POST {path} HTTP/1.1",
        *(f"{name}: {value}" for name, value in defaults.items() if name.lower() not in given),
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _ms(value: float) -> str:
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _errors_text(summary: dict[str, Any]) -> str:
    errors = summary["errors"]
    parts = [f"{status}: {n}" for status, n in errors["status"].items()]
    if errors["refused_retry_after"]:
        parts.append(f"503+Retry-After: {errors['refused_retry_after']}")
    parts += [f"{kind}: {n}" for kind, n in errors["connection"].items()]
    if errors["timeouts"]:
        parts.append(f"timeout: {errors['timeouts']}")
    return ", ".join(parts) or "0"


def results_table(report: dict[str, Any]) -> Table:
    table = Table(title=f"loadtest {report['url']} model {report['model']}")
    for column in ("conc", "req/s", "rows/s", "p50 ms", "p90 ms", "p99 ms", "errors"):
        table.add_column(column, justify="right" if column != "errors" else "left")
    for name in _TIMING_SHOWN:
        table.add_column(f"{name} ms", justify="right")
    for level in report["levels"]:
        latency, timing = level["latency_ms"], level["server_timing_ms"]
        rows = level["rows_per_s"]
        table.add_row(
            str(level["concurrency"]),
            f"{level['req_per_s']:,.0f}",
            f"{rows:,.0f}" if rows is not None else "-",
            _ms(latency["p50"]),
            _ms(latency["p90"]),
            _ms(latency["p99"]),
            _errors_text(level),
            *(_ms(timing[name]) if name in timing else "-" for name in _TIMING_SHOWN),
        )
    return table


def write_plot(report: dict[str, Any], path: Path) -> None:
    """Throughput against p99 latency, one point per concurrency level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = report["levels"]
    p99 = [level["latency_ms"]["p99"] for level in levels]
    rate = [level["req_per_s"] for level in levels]
    figure, axes = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    axes.plot(p99, rate, marker="o")
    for level, x, y in zip(levels, p99, rate, strict=True):
        axes.annotate(
            f"c={level['concurrency']}", (x, y), textcoords="offset points", xytext=(5, 5)
        )
    axes.set_xlabel("p99 latency (ms)")
    axes.set_ylabel("requests/s")
    axes.set_title(f"{report['model']}: {report['rows_per_request'] or '?'} row(s) per request")
    axes.margins(x=0.12, y=0.1)  # room for the last point's label
    axes.grid(visible=True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _plot_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


async def _sweep(
    target: Target,
    levels: list[int],
    duration: float,
    timeout: float,
    progress: Progress,
) -> list[LevelStats]:
    results = []
    for concurrency in levels:
        task = progress.add_task(f"c={concurrency}", total=duration, rate="")
        watching: list[tuple[LevelStats, float]] = []

        def started(
            stats: LevelStats, at: float, into: list[tuple[LevelStats, float]] = watching
        ) -> None:
            into.append((stats, at))

        running = asyncio.get_running_loop().create_task(
            run_level(target, concurrency, duration, timeout, started)
        )
        while not running.done():  # refresh by hand: rich's refresh thread would take the GIL
            await asyncio.wait({running}, timeout=0.25)
            if watching:
                stats, at = watching[0]
                elapsed = min(time.perf_counter() - at, duration)
                rate = stats.answered / elapsed if elapsed > 0 else 0.0
                note = f"{rate:,.0f} req/s, {stats.errors} errors"
                progress.update(task, completed=elapsed, rate=note)
            progress.refresh()
        stats = running.result()
        progress.update(task, completed=duration)
        results.append(stats)
    return results


def run_loadtest(
    url: str,
    model: str,
    *,
    levels: list[int],
    duration: float,
    rows: int,
    body: bytes | None,
    headers: list[tuple[str, str]],
    timeout: float,
    console: Console,
) -> dict[str, Any]:
    """The sweep, as the JSON report; `loadtest_command` adds the table and the files."""
    host, port, prefix = _split_url(url)
    model_path = f"{prefix}/v1/models/{quote(model, safe='')}"
    if body is None:
        body = build_body(fetch_metadata(host, port, model_path, headers, timeout), rows)
    rows_per_request = rows_in(body)
    target = Target(host, port, encode_request(host, port, f"{model_path}/predict", body, headers))
    progress = Progress(
        TextColumn("{task.description:>7}"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[rate]}"),
        console=console,
        auto_refresh=False,
        transient=False,
    )
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner, progress:
        stats = runner.run(_sweep(target, levels, duration, timeout, progress))
    return {
        "url": url,
        "model": model,
        "path": f"{model_path}/predict",
        "rows_per_request": rows_per_request,
        "request_bytes": len(body),
        "duration_s": duration,
        "timeout_s": timeout,
        "client": f"fastinfer-loadtest/{__version__}",
        "levels": [level.summary(rows_per_request) for level in stats],
    }


def loadtest_command(
    url: Annotated[str, typer.Argument(help="The server, e.g. http://127.0.0.1:8000.")],
    model: Annotated[str, typer.Option("--model", "-m", help="The model to load.")],
    concurrency: Annotated[
        str, typer.Option("--concurrency", "-c", help="Connections per level, comma-separated.")
    ] = "1,8,32,128",
    duration: Annotated[
        float, typer.Option("--duration", "-d", min=0.1, help="Seconds per level.")
    ] = 10.0,
    rows: Annotated[
        int, typer.Option("--rows", min=1, help="Rows per request (the model's example, repeated).")
    ] = 1,
    body_file: Annotated[
        Path | None,
        typer.Option("--body", help='Send this request body instead (JSON, {"inputs": [...]}).'),
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the results here as JSON.")
    ] = None,
    plot_out: Annotated[
        Path | None,
        typer.Option("--plot", help="Write a PNG of throughput against p99 latency (matplotlib)."),
    ] = None,
    header: Annotated[
        list[str] | None,
        typer.Option("--header", "-H", help="An extra request header, 'Name: value'; repeatable."),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.01, help="Seconds before a request is an error.")
    ] = 10.0,
) -> None:
    """Closed-loop load on URL's MODEL at each concurrency: req/s, rows/s, latency percentiles,
    errors by status and the server's own Server-Timing breakdown.

    Reads the model's example row from GET /v1/models/MODEL unless --body is given. Exits 1 when
    no request succeeded.
    """
    console = Console(stderr=True)
    try:
        levels = parse_concurrency(concurrency)
        headers = parse_headers(header or [])
        if body_file is not None and rows != 1:
            raise LoadTestError("--rows repeats the model's example; with --body, edit the file")
        body = body_file.read_bytes() if body_file is not None else None
    except (LoadTestError, OSError) as exc:
        console.print(f"loadtest: {exc}", markup=False)
        raise typer.Exit(2) from None
    plot = plot_out is not None and _plot_available()
    if plot_out is not None and not plot:
        console.print(f"loadtest: no plot will be written; {_PLOT_HINT}", markup=False)
    try:
        report = run_loadtest(
            url,
            model,
            levels=levels,
            duration=duration,
            rows=rows,
            body=body,
            headers=headers,
            timeout=timeout,
            console=console,
        )
    except LoadTestError as exc:
        console.print(f"loadtest: {exc}", markup=False)
        raise typer.Exit(2) from None
    out = Console()
    if not out.is_terminal:  # piped or captured: wide enough that the columns are not cut
        out = Console(width=160)
    out.print(results_table(report))
    busy = max(level["client_cpu_percent"] for level in report["levels"])
    if busy > 80:
        console.print(
            f"loadtest: this process used {busy:.0f}% of a CPU core: the client may be the limit",
            markup=False,
        )
    if json_out is not None:
        json_out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    if plot_out is not None:
        if plot:
            write_plot(report, plot_out)
        else:
            console.print(f"loadtest: {plot_out} not written; {_PLOT_HINT}", markup=False)
    if not any(level["ok"] for level in report["levels"]):
        raise typer.Exit(1)
