"""The health process's HTTP server, on a real socket, with a board written by the test.

A probe server is a server too: one slow client must not hold up the probes of others, and its
answers speak like the rest of the service (JSON errors, nosniff, no Server header)."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx2 as httpx
import pytest

from fastinfer.serving.health import MAX_HEAD_BYTES, REQUEST_DEADLINE_S, serve_health
from fastinfer.serving.heartbeat import PHASE_SERVING, READY, HeartbeatBoard


@pytest.fixture
def health_url() -> Iterator[str]:
    """A forked health process answering from a board with one ready, beating worker."""
    board = HeartbeatBoard(1)
    board.set_phase(PHASE_SERVING)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    pid = os.fork()
    if pid == 0:  # the health process, as the supervisor forks it
        code = 1
        try:
            serve_health(board, sock, loop_block_s=30.0)
            code = 0
        finally:
            os._exit(code)
    sock.close()
    beating = True

    def beat() -> None:
        while beating:
            board.write(0, os.getpid(), READY, "")
            time.sleep(0.1)

    with ThreadPoolExecutor(1) as pool:
        pool.submit(beat)
        try:
            yield url
        finally:
            beating = False
            os.kill(pid, signal.SIGTERM)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0  # SIGTERM: a clean exit


def _trickle(port: int, stop_after: float) -> bytes:
    """A client sending `GET /livez` one byte every 0.25 s; what the server answered it."""
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.settimeout(stop_after + 5)
        for byte in b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n":
            try:
                client.sendall(bytes([byte]))
            except OSError:
                break  # the server gave up on us: what we wanted
            time.sleep(0.25)
        return client.recv(4096)


def test_a_slow_client_does_not_hold_up_other_probes(health_url: str) -> None:
    port = int(health_url.rsplit(":", 1)[1])
    with ThreadPoolExecutor(4) as pool:
        slow = [pool.submit(_trickle, port, REQUEST_DEADLINE_S) for _ in range(3)]
        time.sleep(0.3)  # the slow clients hold their connections from now on
        started = time.monotonic()
        answers = [httpx.get(f"{health_url}/livez", timeout=1.0) for _ in range(20)]
        elapsed = time.monotonic() - started
        assert [a.status_code for a in answers] == [200] * 20
        assert elapsed < REQUEST_DEADLINE_S  # none of them waited for the slow clients
        for future in slow:
            head = future.result().split(b"\r\n\r\n", 1)[0]
            assert head.startswith(b"HTTP/1.1 408")  # cut off at the deadline


def test_answers_speak_like_the_rest_of_the_service(health_url: str) -> None:
    ready = httpx.get(f"{health_url}/readyz", timeout=2)
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}
    assert "server" not in ready.headers
    assert ready.headers["x-content-type-options"] == "nosniff"
    missing = httpx.get(f"{health_url}/nope", timeout=2)
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    posted = httpx.post(f"{health_url}/livez", timeout=2)
    assert posted.status_code == 405 and posted.json()["code"] == "method_not_allowed"
    huge = httpx.get(f"{health_url}/livez", headers={"X-Big": "x" * MAX_HEAD_BYTES}, timeout=2)
    assert huge.status_code == 431 and huge.json()["code"] == "headers_too_large"
    assert httpx.get(f"{health_url}/livez", timeout=2).status_code == 200  # still serving
