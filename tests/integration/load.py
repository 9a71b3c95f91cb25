"""Keep predictions in flight against a server while probing its /livez: the seed scenario."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx2 as httpx


@dataclass
class ProbeReport:
    probes: int = 0
    probe_failures: list[str] = field(default_factory=list)
    probe_latencies: list[float] = field(default_factory=list)
    predictions_ok: int = 0
    prediction_errors: list[str] = field(default_factory=list)

    @property
    def worst_probe(self) -> float:
        return max(self.probe_latencies, default=0.0)


def probe_under_load(
    base_url: str,
    path: str,
    body: dict[str, Any],
    *,
    concurrency: int = 32,
    duration: float = 10.0,
    probe_every: float = 0.1,
    probe_timeout: float = 1.0,
) -> ProbeReport:
    """`concurrency` clients POST `body` back to back for `duration` s; /livez every 100 ms."""
    report = ProbeReport()
    lock = threading.Lock()
    # Clients are made before the clock starts: making one is slow (TLS context) and would
    # otherwise delay the prober, under the GIL of this process, rather than the server.
    clients = [httpx.Client(base_url=base_url, timeout=60) for _ in range(concurrency)]
    prober = httpx.Client(base_url=base_url, timeout=probe_timeout)
    stop_at = time.monotonic() + duration

    def client_loop(client: httpx.Client) -> None:
        with client:
            while time.monotonic() < stop_at:
                try:
                    response = client.post(path, json=body)
                    outcome = None if response.status_code == 200 else str(response.status_code)
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                with lock:
                    if outcome is None:
                        report.predictions_ok += 1
                    else:
                        report.prediction_errors.append(outcome)

    def probe_loop() -> None:
        with prober as client:
            next_at = time.monotonic()
            while time.monotonic() < stop_at:
                started = time.monotonic()
                try:
                    response = client.get("/livez")
                    failure = None if response.status_code == 200 else str(response.status_code)
                except httpx.HTTPError as exc:
                    failure = type(exc).__name__
                elapsed = time.monotonic() - started
                report.probes += 1
                report.probe_latencies.append(elapsed)
                if failure is not None:
                    report.probe_failures.append(f"{failure} after {elapsed:.3f}s")
                next_at += probe_every
                time.sleep(max(0.0, next_at - time.monotonic()))

    threads = [threading.Thread(target=probe_loop)]
    threads += [threading.Thread(target=client_loop, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=duration + 90)
    return report
