"""The HTTP connection's own limits and lifecycle, against a real server process and raw
sockets: request heads bounded in size (431) and time (408) on every route, early answers a
client that sends its whole body first can read (lingering close), keep-alive connections
drained on SIGTERM without losing a request, and connections rebalanced after a worker is
replaced."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CAR_VALUES, build_scripted_model
from tests.integration.keepalive import keep_alive_clients
from tests.integration.server import RunningServer, running_server

pytestmark = pytest.mark.slow
CAR = Path(__file__).resolve().parents[2] / "examples" / "car_evaluation"
PREDICT = "/v1/models/car_evaluation/predict"
BODY = json.dumps({"inputs": [{name: values[0] for name, values in CAR_VALUES.items()}]}).encode()


@pytest.fixture(scope="module")
def one_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server process (no supervisor) with the admin API on, for the limit tests."""
    env = {"FASTINFER_ADMIN_TOKEN": "x", "FASTINFER_HEADER_READ_TIMEOUT_S": "1"}
    log = tmp_path_factory.mktemp("limits") / "server.log"
    with running_server([str(CAR), "--workers", "1"], log, env=env) as server:
        yield server


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _worker_pids(server: RunningServer) -> list[int]:
    """The server processes' pids, from the health port's `/health` (no keys: detailed)."""
    workers = json.loads(urllib.request.urlopen(f"{server.health_url}/health").read())
    return sorted(w["pid"] for w in workers["alive"]["workers"].values())


def _rss_kib(server: RunningServer) -> int:
    """Resident memory of the server's processes together (supervisor, workers, health)."""
    total = 0
    pids = [server.process.pid, *_children(server.process.pid)]
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()]


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _read_answer(sock: socket.socket) -> bytes:
    """One whole response (head and Content-Length body); what arrived if the server closed."""
    sock.settimeout(30)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


@pytest.mark.parametrize("path", ["/livez", "/readyz", "/metrics", "/docs", PREDICT])
def test_a_64_mib_header_gets_431_without_growing_memory(
    one_process: RunningServer, path: str
) -> None:
    server = one_process
    before = _rss_kib(server)
    sock = socket.create_connection(("127.0.0.1", _port(server.url)))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nX-Big: ".encode())
    chunk = b"a" * 65536
    try:  # the server answers at 16 KiB, then discards what comes for a while, then closes
        for _ in range(1024):  # 64 MiB
            sock.sendall(chunk)
        answer = _read_answer(sock)
    except OSError:  # closed before all of it was sent: fine, nothing was kept
        answer = b""
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431 "), answer[:100]
    grew_kib = _rss_kib(server) - before
    sock.close()
    assert grew_kib < 20 * 1024
    # The answer itself, read by a client that stops sending once the head is too large.
    sock = socket.create_connection(("127.0.0.1", _port(server.url)))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nX-Big: ".encode() + b"a" * 40000)
    answer = _read_answer(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert b"connection: close" in answer.lower()
    assert b'"code":"headers_too_large"' in answer


def test_a_trickling_request_head_gets_408_and_blocks_nobody(one_process: RunningServer) -> None:
    server = one_process
    sock = socket.create_connection(("127.0.0.1", _port(server.url)))
    sock.settimeout(10)
    started = time.monotonic()
    answer = b""
    for byte in b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 40:
        try:
            sock.send(bytes([byte]))
        except OSError:
            break
        probe = urllib.request.urlopen(f"{server.url}/livez", timeout=2)
        assert probe.status == 200
        time.sleep(0.1)
    answer = _read_answer(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b'"code":"request_timeout"' in answer
    assert time.monotonic() - started < 9


def _urllib_post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.parametrize(
    "path",
    [
        PREDICT,
        "/v2/models/car_evaluation/infer",
        "/v1/models/car_evaluation/feedback",
        "/v2/repository/index",
        "/admin/models/car_evaluation/unload",
    ],
)
def test_a_client_sending_its_whole_body_first_reads_the_413(
    one_process: RunningServer, path: str
) -> None:
    """urllib (like `requests`) sends the whole body, then reads: an early answer followed by
    an abrupt close would reach it as 'connection reset by peer'."""
    server = one_process
    before = _rss_kib(server)
    for size in (5 * 1024 * 1024, 20 * 1024 * 1024, 100 * 1024 * 1024):
        body = b'{"inputs": [' + b" " * size + b"]}"
        headers = {"Content-Type": "application/json", "Authorization": "Bearer x"}
        status, answer = _urllib_post(f"{server.url}{path}", body, headers)
        assert status == 413, (size, answer)
        assert answer.get("code") == "payload_too_large" or "error" in answer  # v2's shape
    assert _rss_kib(server) - before < 20 * 1024


def test_sigterm_loses_no_request_of_keep_alive_clients(tmp_path: Path) -> None:
    """64 closed-loop clients on persistent connections, SIGTERM mid-load: every request sent
    is answered, and every client is told `Connection: close` (none finds its connection
    closed under a request on its way)."""
    for _run in range(5):
        with running_server([str(CAR), "--workers", "2"], tmp_path / "server.log") as server:
            with keep_alive_clients(_port(server.url), PREDICT, BODY, 64) as report:
                time.sleep(1.0)
                server.process.send_signal(signal.SIGTERM)
                assert server.process.wait(timeout=30) == 0
            assert report.lost == 0, report.errors[:5]
            assert report.told_to_close == 64
            assert set(report.statuses) == {200}


def test_sigterm_with_a_drain_delay_serves_clients_that_reconnect(tmp_path: Path) -> None:
    """Clients that reconnect after `Connection: close` (a pool) until the load balancer stops
    routing here (0.5 s after SIGTERM, within the 1.5 s drain delay): none lost."""
    env = {"FASTINFER_DRAIN_DELAY_S": "1.5"}
    for _run in range(5):
        args = [str(CAR), "--workers", "2"]
        with running_server(args, tmp_path / "server.log", env=env) as server:
            routed = threading.Event()
            routed.set()
            port = _port(server.url)
            with keep_alive_clients(port, PREDICT, BODY, 64, routed_here=routed) as report:
                time.sleep(1.0)
                server.process.send_signal(signal.SIGTERM)
                time.sleep(0.5)
                routed.clear()
                assert server.process.wait(timeout=30) == 0
            assert report.lost == 0, report.errors[:5]
            assert report.told_to_close > 64  # reconnected clients were served, then told too


def test_an_idle_keep_alive_connection_is_not_closed_under_a_request_on_its_way(
    tmp_path: Path,
) -> None:
    with running_server([str(CAR), "--workers", "1"], tmp_path / "server.log") as server:
        sock = socket.create_connection(("127.0.0.1", _port(server.url)))
        request = (
            f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(BODY)}\r\n\r\n"
        ).encode() + BODY
        sock.sendall(request)
        first = _read_answer(sock)
        assert first.startswith(b"HTTP/1.1 200 ") and b"connection: close" not in first.lower()
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)  # the connection is idle as the drain starts; the next request is late
        sock.sendall(request)
        second = _read_answer(sock)
        sock.close()
        assert second.startswith(b"HTTP/1.1 200 ")
        assert b"connection: close" in second.lower()
        assert server.process.wait(timeout=30) == 0


def test_a_replaced_worker_gets_its_share_of_keep_alive_connections(tmp_path: Path) -> None:
    with running_server([str(CAR), "--workers", "2"], tmp_path / "server.log") as server:
        routed = threading.Event()
        routed.set()
        port = _port(server.url)
        with keep_alive_clients(port, PREDICT, BODY, 32, routed_here=routed) as report:
            time.sleep(1.0)
            victim, survivor = _worker_pids(server)
            os.kill(victim, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                workers = _worker_pids(server)
                if len(workers) == 2 and victim not in workers:
                    break
                time.sleep(0.05)
            (replacement,) = set(_worker_pids(server)) - {survivor}
            time.sleep(3.0)  # it loads, listens, and the survivor hands connections over
            before = {pid: _cpu_ticks(pid) for pid in (survivor, replacement)}
            time.sleep(2.0)
            used = {pid: _cpu_ticks(pid) - before[pid] for pid in before}
        assert report.answered > 0
        share = used[replacement] / max(1, sum(used.values()))
        assert share > 0.2, (used, report.statuses)


def test_a_request_whose_client_disconnects_while_queued_is_never_computed(
    tmp_path: Path,
) -> None:
    model = build_scripted_model(tmp_path / "scripted", batching={"max_batch_size": 1})
    calls = tmp_path / "calls.log"
    env = {"CALL_LOG": str(calls)}
    args = [str(model), "--workers", "1"]
    with running_server(args, tmp_path / "server.log", env=env) as server:
        calls.write_text("")  # the self-test's call
        path = "/v1/models/scripted/predict"
        busy = threading.Thread(
            target=urllib.request.urlopen,
            args=(
                urllib.request.Request(
                    f"{server.url}{path}",
                    data=json.dumps({"inputs": [{"x": 1, "sleep": 1.5}]}).encode(),
                    headers={"Content-Type": "application/json"},
                ),
            ),
        )
        busy.start()
        time.sleep(0.3)  # x=1 runs; x=2 queues behind it, and its client gives up
        body = json.dumps({"inputs": [{"x": 2}]}).encode()
        sock = socket.create_connection(("127.0.0.1", _port(server.url)))
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        time.sleep(0.2)
        sock.close()
        busy.join(timeout=10)
        after = urllib.request.urlopen(  # the worker is free again: a third request runs
            urllib.request.Request(
                f"{server.url}{path}",
                data=json.dumps({"inputs": [{"x": 3}]}).encode(),
                headers={"Content-Type": "application/json"},
            ),
            timeout=10,
        )
        assert after.status == 200
        assert calls.read_text().split() == ["1.0", "3.0"]  # x=2 was never computed
        metrics = urllib.request.urlopen(f"{server.health_url}/metrics").read().decode()
        assert 'reason="cancelled"' in metrics
    assert '"status": 499' in server.logs() or '"status":499' in server.logs()
