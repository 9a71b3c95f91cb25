"""A client that trickles its body gets a 408 and a closed connection; others are served."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx2 as httpx
import pytest

from tests.conftest import build_tiny_model
from tests.integration.server import running_server

pytestmark = pytest.mark.slow


def _read_all(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection (or `timeout` passes)."""
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return data
        if not chunk:
            return data
        data += chunk


def test_a_trickled_body_is_cut_off_with_408(tmp_path: Path) -> None:
    model = build_tiny_model(tmp_path / "tiny")
    env = {"FASTINFER_BODY_READ_TIMEOUT_S": "1", "FASTINFER_WORKERS": "1"}
    with running_server([str(model)], tmp_path / "server.log", env=env) as server:
        url = urlsplit(server.url)
        with socket.create_connection((url.hostname, url.port)) as sock:
            head = (
                "POST /v1/models/tiny/predict HTTP/1.1\r\n"
                f"Host: {url.netloc}\r\n"
                "Content-Type: application/json\r\n"
                "Content-Length: 100\r\n\r\n"
            )
            sock.sendall(head.encode() + b'{"inputs": [')
            started = time.monotonic()
            answer = _read_all(sock, timeout=10)
            waited = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b"request_timeout" in answer
        assert b"connection: close" in answer.lower()
        assert 0.8 < waited < 8  # cut after the timeout, and the socket was closed
        served = httpx.post(
            f"{server.url}/v1/models/tiny/predict",
            json={"inputs": [{"x": 7, "colour": 0}]},
            timeout=5,
        )
        assert served.status_code == 200
