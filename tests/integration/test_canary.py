"""A canary under load: a staged version takes 10% of the default, then all of it, then none.

A real server with two worker processes stages version 2 from its repository
(FASTINFER_NEW_VERSIONS=stage); closed-loop clients predict while the admin API splits the
default 90/10, promotes version 2 and rolls back to version 1. Each process picks by smooth
weighted round robin, so the split is 90/10 within a few requests; no request fails.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.api.test_repository import ROW, build_repository
from tests.integration.keepalive import assert_none_failed, predicting
from tests.integration.server import running_server

pytestmark = pytest.mark.slow
TOKEN = "canary-token"
PREDICT = "/v1/models/tiny/predict"


def test_a_split_holds_its_weights_and_promotion_and_rollback_lose_nothing(
    tmp_path: Path,
) -> None:
    repository = build_repository(tmp_path / "models", {"tiny": ["1"]})
    env = {
        "FASTINFER_MODEL_REPOSITORY": str(repository),
        "FASTINFER_ADMIN_TOKEN": TOKEN,
        "FASTINFER_NEW_VERSIONS": "stage",
    }
    with running_server(["--workers", "2"], tmp_path / "server.log", env=env) as server:
        marks: dict[str, tuple[float, float]] = {}  # step → (sent, answered)
        with predicting(server.url, 16, PREDICT, ROW) as answers, server.admin(TOKEN) as admin:

            def step(name: str, method: str, path: str, body: object = None) -> None:
                sent = time.monotonic()
                response = admin.request(method, path, json=body)
                marks[name] = (sent, time.monotonic())
                assert response.status_code == 200, response.text
                assert response.json()["workers"] == {"worker-0": "applied", "worker-1": "applied"}

            time.sleep(1.0)
            build_repository(repository, {"tiny": ["2"]})
            step("stage", "POST", "/admin/repository/sync")
            time.sleep(1.0)
            step("split", "PUT", "/admin/models/tiny/default", {"split": {"1": 90, "2": 10}})
            time.sleep(4.0)
            step("promote", "PUT", "/admin/models/tiny/default", {"version": "2"})
            time.sleep(1.5)
            step("rollback", "PUT", "/admin/models/tiny/default", {"version": "1"})
            time.sleep(1.0)

        assert_none_failed(answers)

        def between(start: str, end: str) -> list[str | None]:
            """Versions of the answers sent after `start` was applied, answered before `end`
            was asked for."""
            after, before = marks[start][1], marks[end][0]
            return [a.version for a in answers if a.sent > after and a.received < before]

        staged = between("stage", "split")
        assert staged and set(staged) == {"1"}  # staged: reachable, but not the default
        split = between("split", "promote")
        share = split.count("2") / len(split)
        print(f"{len(answers)} predictions, 0 failed; split: {len(split)}, {share:.3f} to v2")
        assert len(split) >= 100
        assert set(split) == {"1", "2"}
        assert abs(share - 0.10) <= 0.03
        promoted = between("promote", "rollback")
        assert promoted and set(promoted) == {"2"}
        rolled_back = [a.version for a in answers if a.sent > marks["rollback"][1]]
        assert rolled_back and set(rolled_back) == {"1"}
        assert server.stop() == 0
