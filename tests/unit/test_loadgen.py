"""`fastinfer loadtest`'s load generator: the HTTP response parser, the latency buckets, and
closed-loop runs against small loopback servers that misbehave on purpose."""

from __future__ import annotations

import asyncio
import json
import math
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fastinfer import __version__
from fastinfer.cli import app, loadtest
from fastinfer.cli.loadgen import (
    Histogram,
    LevelStats,
    ProtocolError,
    ResponseParser,
    Target,
    bucket_of,
    bucket_value,
    parse_head,
    parse_server_timing,
    run_level,
)
from fastinfer.engine.work import WorkItem

OK = (
    b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-model-version: 1.0.0\r\n"
    b"server-timing: queue;dur=0.5, batch-wait;dur=1.5, infer;dur=2.0\r\n\r\nhello"
)


# --- the parser -------------------------------------------------------------------------------


def test_a_whole_response_in_one_read() -> None:
    head = ResponseParser().feed(OK)
    assert head is not None
    assert (head.status, head.content_length, head.close) == (200, 5, False)
    assert head.model_version == b"1.0.0"
    assert head.server_timing == b"queue;dur=0.5, batch-wait;dur=1.5, infer;dur=2.0"


def test_a_response_byte_by_byte_and_two_back_to_back() -> None:
    parser = ResponseParser()
    heads = [parser.feed(OK[i : i + 1]) for i in range(len(OK))]
    assert heads[:-1] == [None] * (len(OK) - 1) and heads[-1] is not None
    assert not parser.pending
    first = parser.feed(OK + OK[:20])  # the start of the next one stays for the next read
    assert first is not None and parser.pending
    second = parser.feed(OK[20:])
    assert second is not None and second.status == 200 and not parser.pending


def test_header_names_are_case_insensitive_and_values_keep_their_case() -> None:
    head = parse_head(
        b"HTTP/1.1 503 Busy\r\nRETRY-AFTER: 1\r\nConnection: Close\r\nX-Model-Version: V2"
    )
    assert (head.status, head.retry_after, head.close, head.model_version) == (
        503,
        b"1",
        True,
        b"V2",
    )
    assert head.content_length == -1


def test_chunked_bodies_with_extensions_and_trailers_in_pieces() -> None:
    response = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: yes\r\n\r\n"
    )
    for cut in (10, 48, 60, 75, len(response) - 3):
        parser = ResponseParser()
        assert parser.feed(response[:cut]) is None
        head = parser.feed(response[cut:] + OK)
        assert head is not None and head.chunked
        assert parser.feed(b"") is not None  # the next response was kept whole
    parser = ResponseParser()
    assert (
        parser.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n") is not None
    )


def test_no_body_statuses_interim_answers_and_bodies_that_end_with_the_connection() -> None:
    assert ResponseParser().feed(b"HTTP/1.1 204 No Content\r\n\r\n") is not None
    head = ResponseParser().feed(b"HTTP/1.1 100 Continue\r\n\r\n" + OK)
    assert head is not None and head.status == 200
    parser = ResponseParser()
    assert parser.feed(b"HTTP/1.0 200 OK\r\n\r\nall of it") is None
    assert parser.feed(b" until the close") is None
    ended = parser.eof()
    assert ended is not None and ended.close  # HTTP/1.0 closes
    assert ResponseParser().eof() is None


@pytest.mark.parametrize(
    "bad",
    [
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_what_is_not_http_is_a_protocol_error(bad: bytes) -> None:
    with pytest.raises(ProtocolError):
        ResponseParser().feed(bad)


def test_an_endless_head_is_a_protocol_error() -> None:
    parser = ResponseParser()
    with pytest.raises(ProtocolError):
        for _ in range(100):
            parser.feed(b"X-Filler: " + b"a" * 1000 + b"\r\n")


def test_server_timing_as_the_engine_writes_it() -> None:
    """Parsed from the engine's own header, so a renamed entry fails here."""
    item = WorkItem([], 0.0, "id", None, enqueued_at=1.0)  # type: ignore[arg-type]
    item.started_at, item.finished_at, item.batch_wait, item.infer_seconds = (
        1.003,
        1.01,
        0.002,
        0.005,
    )
    item.batch_rows, item.batch_requests = 4, 2
    timing = parse_server_timing(item.server_timing(0.0001).encode())
    assert timing == pytest.approx(
        {"queue": 1.0, "batch-wait": 2.0, "infer": 5.0, "dispatch": 2.0, "encode": 0.1}
    )
    stats = LevelStats(1)
    stats.record_timing(item.server_timing(0.0001).encode())
    stats.record_timing(b"queue;dur=3, batch-wait;dur=0, infer;dur=1")
    assert stats.summary(1)["server_timing_ms"]["queue"] == pytest.approx(2.0)


# --- the latency buckets ----------------------------------------------------------------------


def test_buckets_are_exact_below_256_us_and_within_one_percent_above() -> None:
    assert [bucket_value(bucket_of(v)) for v in range(256)] == list(range(256))
    previous = -1
    for micros in [*range(250, 5000), 10**6, 10**7 + 3, 3_600_000_000]:
        index = bucket_of(micros)
        assert index >= previous  # monotonic
        previous = index
        assert abs(bucket_value(index) - micros) / micros < 0.008


def test_percentiles_match_nearest_rank_on_the_raw_values() -> None:
    rng = random.Random(7)
    values = [int(rng.lognormvariate(8, 1)) for _ in range(20_000)]
    histogram = Histogram()
    for value in values:
        histogram.record(value)
    ordered = sorted(values)
    for q in (50, 90, 99, 99.9, 100):
        exact = ordered[max(0, math.ceil(len(values) * Fraction(str(q)) / 100) - 1)] / 1000
        assert histogram.percentile(q) == pytest.approx(exact, rel=0.008)
    assert histogram.max_us == max(values)
    assert histogram.mean_ms() == pytest.approx(sum(values) / len(values) / 1000)
    assert Histogram().percentile(99) == 0.0


def test_histograms_merge() -> None:
    left, right, both = Histogram(), Histogram(), Histogram()
    for value in range(1, 1000):
        (left if value % 2 else right).record(value * 37)
        both.record(value * 37)
    left.merge(right)
    assert left.counts == both.counts and left.count == both.count
    assert left.percentile(99) == both.percentile(99) and left.max_us == both.max_us


# --- closed-loop runs against loopback servers ------------------------------------------------

Handler = Any


async def _serve(answer: Handler) -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                served += 1
                reply = await answer(served)
                if reply is None:
                    continue
                writer.write(reply)
                await writer.drain()
                if b"connection: close" in reply.lower():
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def _target(port: int) -> Target:
    body = b'{"inputs": [{}]}'
    request = loadtest.encode_request("127.0.0.1", port, "/p", body, [])
    return Target("127.0.0.1", port, request)


def _run(answer: Handler, concurrency: int, duration: float, timeout: float = 5) -> LevelStats:
    async def main() -> LevelStats:
        server, port = await _serve(answer)
        async with server:
            return await run_level(_target(port), concurrency, duration, timeout)

    return asyncio.run(main())


def test_keep_alive_answers_are_counted_with_their_timing() -> None:
    async def answer(served: int) -> bytes:
        return OK

    stats = _run(answer, 4, 0.3)
    summary = stats.summary(3)
    assert stats.answered > 20 and stats.errors == 0 and stats.reconnects == 0
    assert summary["rows_per_s"] == pytest.approx(summary["req_per_s"] * 3, rel=0.01)
    assert summary["server_timing_ms"] == {"queue": 0.5, "batch-wait": 1.5, "infer": 2.0}
    assert summary["model_versions"] == {"1.0.0": stats.answered}


def test_connection_close_opens_another_connection_without_an_error() -> None:
    async def answer(served: int) -> bytes:
        if served == 3:
            return OK.replace(b"content-length: 5", b"content-length: 5\r\nconnection: close")
        return OK

    stats = _run(answer, 2, 0.3)
    assert stats.reconnects >= 2 and stats.errors == 0 and stats.ok == stats.answered > 10


def test_refusals_with_retry_after_are_counted_apart_from_other_statuses() -> None:
    refused = b"HTTP/1.1 503 Busy\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n"
    failed = b"HTTP/1.1 500 Oops\r\nContent-Length: 2\r\n\r\n{}"

    async def answer(served: int) -> bytes:
        return (OK, refused, failed)[served % 3]

    summary = _run(answer, 3, 0.3).summary(1)
    errors = summary["errors"]
    assert errors["refused_retry_after"] == errors["status"]["503"] > 5
    assert errors["status"]["500"] > 5
    assert errors["total"] == summary["requests"] - summary["ok"]


def test_a_server_that_never_answers_times_out_and_one_that_hangs_up_is_an_error() -> None:
    async def silent(served: int) -> None:
        await asyncio.sleep(10)

    stats = _run(silent, 2, 0.5, timeout=0.1)
    assert stats.timeouts >= 4 and stats.answered == 0

    async def rude(served: int) -> bytes:
        return b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\ncut short"

    stats = _run(rude, 2, 0.3)
    assert stats.answered == 0 and sum(stats.connection_errors.values()) > 2


def test_a_closed_port_is_counted_as_connection_errors() -> None:
    async def main() -> LevelStats:
        server, port = await _serve(lambda served: None)
        server.close()
        await server.wait_closed()
        return await run_level(_target(port), 2, 0.3, 1)

    stats = asyncio.run(main())
    assert stats.answered == 0 and stats.connection_errors.get("ConnectionRefusedError", 0) >= 2


# --- the command, against a small threaded server ---------------------------------------------


class _FakeFastinfer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    example: dict[str, Any] | None = {"x": 1}
    seen: list[tuple[str, str | None, bytes]] = []

    def do_GET(self) -> None:
        self._reply(200, {"name": "m", "example": self.example, "max_rows": 10}, {})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((self.path, self.headers.get("Authorization"), body))
        timing = {"Server-Timing": "queue;dur=0.1, batch-wait;dur=0.2, infer;dur=0.3"}
        self._reply(200, {"predictions": [1]}, {"X-Model-Version": "7", **timing})

    def _reply(self, status: int, payload: dict[str, Any], headers: dict[str, str]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        for name, value in {"Content-Length": str(len(data)), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def _fake_server() -> Iterator[str]:
    _FakeFastinfer.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeFastinfer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_command_sends_the_example_rows_with_the_headers_and_writes_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loadtest, "_plot_available", lambda: False)
    out = tmp_path / "out.json"
    with _fake_server() as url:
        result = CliRunner().invoke(
            app,
            [
                "loadtest",
                url,
                "-m",
                "m",
                "-c",
                "1,2",
                "-d",
                "0.3",
                "--rows",
                "3",
                "-H",
                "Authorization: Bearer k",
                "--json",
                str(out),
                "--plot",
                str(tmp_path / "p.png"),
            ],
        )
    assert result.exit_code == 0, result.output
    path, auth, body = _FakeFastinfer.seen[0]
    assert (path, auth) == ("/v1/models/m/predict", "Bearer k")
    assert json.loads(body) == {"inputs": [{"x": 1}] * 3}
    report = json.loads(out.read_text())
    assert [level["concurrency"] for level in report["levels"]] == [1, 2]
    assert report["levels"][0]["rows_per_s"] == pytest.approx(
        report["levels"][0]["req_per_s"] * 3, rel=0.01
    )
    assert report["levels"][1]["server_timing_ms"]["infer"] == pytest.approx(0.3)
    assert "req/s" in result.stdout and "batch-wait" in result.stdout
    assert "pip install matplotlib" in result.stderr
    assert not (tmp_path / "p.png").exists()


def test_the_command_refuses_what_it_cannot_send(tmp_path: Path) -> None:
    runner = CliRunner()
    with _fake_server() as url:
        too_many = runner.invoke(app, ["loadtest", url, "-m", "m", "--rows", "11", "-d", "0.1"])
        assert too_many.exit_code == 2 and "at most 10 rows" in too_many.stderr
        _FakeFastinfer.example = None
        try:
            none = runner.invoke(app, ["loadtest", url, "-m", "m", "-d", "0.1"])
        finally:
            _FakeFastinfer.example = {"x": 1}
        assert none.exit_code == 2 and "--body FILE" in none.stderr
        body = tmp_path / "body.json"
        body.write_text('{"inputs": [{"x": 2}, {"x": 3}]}')
        given = runner.invoke(
            app, ["loadtest", url, "-m", "m", "-c", "1", "-d", "0.2", "--body", str(body)]
        )
        assert given.exit_code == 0, given.output
        assert _FakeFastinfer.seen[-1][2] == body.read_bytes()
    for args, message in [
        (["-c", "1,x"], "--concurrency"),
        (["-H", "no colon"], "--header"),
    ]:
        result = runner.invoke(app, ["loadtest", "http://127.0.0.1:1", "-m", "m", *args])
        assert result.exit_code == 2 and message in result.stderr
    tls = runner.invoke(app, ["loadtest", "https://example.com", "-m", "m"])
    assert tls.exit_code == 2 and "only http://" in tls.stderr


def test_a_header_replaces_the_default_of_its_name() -> None:
    request = loadtest.encode_request("h", 1, "/p", b"{}", [("host", "svc"), ("X-API-Key", "k")])
    head, _, body = request.partition(b"\r\n\r\n")
    assert head.split(b"\r\n") == [
        b"POST /p HTTP/1.1",
        b"User-Agent: fastinfer-loadtest/" + __version__.encode(),
        b"Content-Type: application/json",
        b"Content-Length: 2",
        b"host: svc",
        b"X-API-Key: k",
    ]
    assert body == b"{}"
    with pytest.raises(loadtest.LoadTestError):
        loadtest.encode_request("h", 1, "/p", b"{}", [("Content-Length", "9")])


def test_nothing_answering_exits_1(tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    body.write_text('{"inputs": [{}]}')
    with _fake_server() as url:
        port = url.rsplit(":", 1)[1]
    result = CliRunner().invoke(
        app,
        [
            "loadtest",
            f"http://127.0.0.1:{port}",
            "-m",
            "m",
            "-c",
            "1",
            "-d",
            "0.2",
            "--body",
            str(body),
        ],
    )
    assert result.exit_code == 1
    assert "ConnectionRefusedError" in result.stdout
