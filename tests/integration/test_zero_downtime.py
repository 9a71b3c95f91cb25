"""Changing the default version under load: 32 connections keep predicting, nothing fails.

A real server with two worker processes (each with its own copy of every version) serves a
repository; the admin API loads a new version, then reloads it, while clients predict.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.api.test_repository import build_repository
from tests.integration.server import running_server

pytestmark = pytest.mark.slow
TOKEN = "zero-downtime-token"
ROW = {"inputs": [{"x": 1, "colour": 0}]}


@dataclass(frozen=True)
class Answer:
    sent: float
    received: float
    status: int
    version: str | None


def keep_predicting(url: str, stop: threading.Event, answers: list[Answer]) -> None:
    with httpx.Client(base_url=url, timeout=10) as client:
        while not stop.is_set():
            sent = time.monotonic()
            try:
                response = client.post("/v1/models/tiny/predict", json=ROW)
                status = response.status_code
                version = response.json().get("version") if status == 200 else response.text
            except httpx.TransportError as exc:
                status, version = 0, repr(exc)
            answers.append(Answer(sent, time.monotonic(), status, version))


def test_switching_versions_under_load_fails_no_request(tmp_path: Path) -> None:
    repository = build_repository(tmp_path / "models", {"tiny": ["1"]})
    args = ["--workers", "2"]
    env = {"FASTINFER_MODEL_REPOSITORY": str(repository), "FASTINFER_ADMIN_TOKEN": TOKEN}
    with running_server(args, tmp_path / "server.log", env=env) as server:
        answers: list[Answer] = []
        stop = threading.Event()
        clients = [
            threading.Thread(target=keep_predicting, args=(server.url, stop, answers))
            for _ in range(32)
        ]
        for thread in clients:
            thread.start()
        admin = httpx.Client(
            base_url=server.url, timeout=60, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        try:
            time.sleep(1.5)
            build_repository(repository, {"tiny": ["2"]})
            loaded = admin.post("/admin/models/tiny/versions/2/load")
            switched = time.monotonic()
            assert loaded.status_code == 200, loaded.text
            assert loaded.json()["workers"] == {"worker-0": "applied", "worker-1": "applied"}
            time.sleep(1.5)
            reloaded = admin.post("/admin/models/tiny/versions/2/reload")
            assert reloaded.status_code == 200, reloaded.text
            time.sleep(1.0)
        finally:
            stop.set()
            for thread in clients:
                thread.join(timeout=30)
            admin.close()
        failed = [a for a in answers if a.status != 200]
        assert not failed, f"{len(failed)} of {len(answers)} failed, e.g. {failed[:3]}"
        assert {a.version for a in answers} == {"1", "2"}
        after = [a for a in answers if a.sent > switched]
        assert after and all(a.version == "2" for a in after)
        before = [a for a in answers if a.received < switched]
        assert any(a.version == "1" for a in before)
        print(f"{len(answers)} predictions, 0 failed; {len(after)} after the switch, all v2")
        assert server.stop() == 0
