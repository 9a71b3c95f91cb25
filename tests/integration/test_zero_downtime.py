"""Changing the default version under load: 32 connections keep predicting, nothing fails.

A real server with two worker processes (each with its own copy of every version) serves a
repository; the admin API loads a new version, then reloads it, while clients predict.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.api.test_repository import ROW, build_repository
from tests.integration.keepalive import assert_none_failed, predicting
from tests.integration.server import running_server

pytestmark = pytest.mark.slow
TOKEN = "zero-downtime-token"
PREDICT = "/v1/models/tiny/predict"


def test_switching_versions_under_load_fails_no_request(tmp_path: Path) -> None:
    repository = build_repository(tmp_path / "models", {"tiny": ["1"]})
    args = ["--workers", "2"]
    env = {"FASTINFER_MODEL_REPOSITORY": str(repository), "FASTINFER_ADMIN_TOKEN": TOKEN}
    with running_server(args, tmp_path / "server.log", env=env) as server:
        with predicting(server.url, 32, PREDICT, ROW) as answers, server.admin(TOKEN) as admin:
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
        assert_none_failed(answers)
        assert {a.version for a in answers} == {"1", "2"}
        after = [a for a in answers if a.sent > switched]
        assert after and all(a.version == "2" for a in after)
        before = [a for a in answers if a.received < switched]
        assert any(a.version == "1" for a in before)
        print(f"{len(answers)} predictions, 0 failed; {len(after)} after the switch, all v2")
        assert server.stop() == 0
