"""Closed-loop clients on persistent connections, as a connection pool uses them: each sends a
request, reads the answer, and sends the next on the same connection until it is told
`Connection: close` (then it moves on, as it would to another replica) or the connection fails.
"""

from __future__ import annotations

import http.client
import threading
from collections import Counter
from dataclasses import dataclass, field


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


def run_clients(
    port: int,
    path: str,
    body: bytes,
    clients: int,
    stop: threading.Event,
    *,
    routed_here: threading.Event | None = None,
) -> tuple[KeepAliveReport, list[threading.Thread]]:
    report = KeepAliveReport()
    threads = [
        threading.Thread(
            target=keep_alive_client,
            args=(port, path, body, stop, report),
            kwargs={"routed_here": routed_here},
        )
        for _ in range(clients)
    ]
    for thread in threads:
        thread.start()
    return report, threads
