"""Closed-loop clients on persistent connections, kept predicting while a test changes the
server under them (a version switch, a SIGTERM, a killed worker), then stopped and counted.

Two kinds: `keep_alive_clients`, on raw connections as a connection pool uses them (each sends
a request, reads the answer, and sends the next on the same connection until it is told
`Connection: close`, then moves on as it would to another replica, or the connection fails);
and `predicting`, httpx clients that record every answer with its timing and version.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx2 as httpx


@dataclass
class KeepAliveReport:
    """What the clients saw. `lost`: a request was sent and no complete answer came back."""

    statuses: Counter[int] = field(default_factory=Counter)
    lost: int = 0
    refused: int = 0  # a connection refused: nothing was sent (safe to retry elsewhere)
    told_to_close: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def answered(self) -> int:
        return sum(self.statuses.values())


def keep_alive_client(
    port: int,
    path: str,
    body: bytes,
    stop: threading.Event,
    report: KeepAliveReport,
    *,
    routed_here: threading.Event | None = None,
) -> None:
    """One client: requests on one connection until told to close, stopped, or failed. With
    `routed_here` (a load balancer's view: set while this server is in its endpoints), a
    client told to close reconnects, as a pool does, for as long as it is set."""
    while (
        _one_connection(port, path, body, stop, report)
        and routed_here is not None
        and routed_here.is_set()
        and not stop.is_set()
    ):
        pass


def _one_connection(
    port: int, path: str, body: bytes, stop: threading.Event, report: KeepAliveReport
) -> bool:
    """Requests on one connection; True when the server asked to close it."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.connect()
    except ConnectionRefusedError:
        with report.lock:
            report.refused += 1
        return False
    try:
        while not stop.is_set():
            try:
                connection.request(
                    "POST", path, body=body, headers={"Content-Type": "application/json"}
                )
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as exc:
                with report.lock:
                    report.lost += 1
                    report.errors.append(f"{type(exc).__name__}: {exc}")
                return False
            with report.lock:
                report.statuses[response.status] += 1
            if (response.getheader("connection") or "").lower() == "close":
                with report.lock:
                    report.told_to_close += 1
                return True
        return False
    finally:
        connection.close()


@contextmanager
def keep_alive_clients(
    port: int,
    path: str,
    body: bytes,
    clients: int,
    *,
    routed_here: threading.Event | None = None,
) -> Iterator[KeepAliveReport]:
    """`clients` keep-alive clients posting `body` until the block ends; what they saw (read it
    after the block: the clients are stopped and joined then)."""
    report, stop = KeepAliveReport(), threading.Event()
    threads = [
        threading.Thread(
            target=keep_alive_client,
            args=(port, path, body, stop, report),
            kwargs={"routed_here": routed_here},
        )
        for _ in range(clients)
    ]
    with _running(threads, stop):
        yield report


@dataclass(frozen=True)
class Answer:
    """One prediction as a client saw it: `status` 0 when the connection failed, `version` the
    answering version (or the error, when not 200)."""

    sent: float
    received: float
    status: int
    version: str | None


def keep_predicting(
    url: str,
    path: str,
    body: Any,
    stop: threading.Event,
    answers: list[Answer],
    *,
    timeout: float = 10,
    pause_s: float = 0.0,
) -> None:
    """One client: predictions back to back (`pause_s` apart) until `stop`, each recorded."""
    with httpx.Client(base_url=url, timeout=timeout) as client:
        while not stop.is_set():
            sent = time.monotonic()
            try:
                response = client.post(path, json=body)
                status = response.status_code
                version = response.json().get("version") if status == 200 else response.text
            except httpx.TransportError as exc:
                status, version = 0, repr(exc)
            answers.append(Answer(sent, time.monotonic(), status, version))
            if pause_s:
                stop.wait(pause_s)


@contextmanager
def predicting(
    url: str, clients: int, path: str, body: Any, *, timeout: float = 10, pause_s: float = 0.0
) -> Iterator[list[Answer]]:
    """`clients` closed-loop clients predicting until the block ends; every answer, in the
    order received (complete once the block ends: the clients are stopped and joined then)."""
    answers: list[Answer] = []
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=keep_predicting,
            args=(url, path, body, stop, answers),
            kwargs={"timeout": timeout, "pause_s": pause_s},
        )
        for _ in range(clients)
    ]
    with _running(threads, stop):
        yield answers


def assert_none_failed(answers: list[Answer]) -> None:
    failed = [a for a in answers if a.status != 200]
    assert not failed, f"{len(failed)} of {len(answers)} failed, e.g. {failed[:3]}"


@contextmanager
def _running(threads: list[threading.Thread], stop: threading.Event) -> Iterator[None]:
    """The clients' threads started, then stopped and joined when the block ends."""
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
