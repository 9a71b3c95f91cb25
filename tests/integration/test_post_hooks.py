"""Post-predict hooks in a real server: they run after the response has gone out."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.api.test_hooks import hooked_model
from tests.integration.server import running_server

pytestmark = pytest.mark.slow


def test_post_hooks_run_after_the_response_and_failures_are_counted(tmp_path: Path) -> None:
    directory = hooked_model(
        tmp_path / "tiny", [], ["tiny_hooks:post_broken", "tiny_hooks:record"], timeout_ms=5000
    )
    record = tmp_path / "record.jsonl"
    env = {"HOOK_RECORD": str(record)}
    with running_server([str(directory), "--workers", "1"], tmp_path / "log", env=env) as server:
        response = httpx.post(
            f"{server.url}/v1/models/tiny/predict",
            json={"inputs": [{"x": 6.5, "colour": 1}]},
            headers={"X-Request-ID": "hooked-1"},
        )
        assert response.status_code == 200
        assert not record.exists()  # the hook sleeps 0.2 s: the answer did not wait for it
        deadline = time.monotonic() + 10
        while not record.exists():
            assert time.monotonic() < deadline, f"the post-hook never ran:\n{server.logs()}"
            time.sleep(0.02)
        request_id, version, rows, predictions = json.loads(record.read_text().splitlines()[0])
        assert (request_id, version) == ("hooked-1", "1")
        assert rows == [{"x": 6.5, "colour": 1}]
        assert predictions == response.json()["predictions"]
        hooks = httpx.get(f"{server.url}/health").json()["models"][0]["hooks"]
        assert hooks["post_failures"] == 1  # logged and counted; the response was unaffected
        assert '"post_hook_failed"' in server.logs()
