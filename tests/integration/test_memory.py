"""What the server's processes keep resident once they serve (issue 15's footprint work)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx2 as httpx
import orjson
import pytest

from tests.conftest import build_tiny_model
from tests.integration.server import children, running_server, smaps_kb, wait_until

pytestmark = pytest.mark.slow


def _released(logs: str) -> list[dict[str, object]]:
    return [
        orjson.loads(line)
        for line in logs.splitlines()
        if line.startswith("{") and '"startup_pages_released"' in line
    ]


def test_the_supervisor_hands_back_the_pages_only_it_touched(tmp_path: Path) -> None:
    """Once every worker listens, the supervisor keeps no file page that only it maps (the
    import-time code it ran; with the examples ~60 MB of its PSS before), and the workers,
    a replacement included, are unaffected: what they map stays, what they need comes back."""
    model = build_tiny_model(tmp_path / "tiny")
    row = {"inputs": [{"x": 6.5, "colour": 1}]}
    with running_server([str(model), "--workers", "2"], tmp_path / "server.log") as server:
        wait_until(lambda: len(_released(server.logs())) >= 1, 30)
        released = _released(server.logs())[-1]
        assert released["refused"] == 0 and int(released["mappings"]) > 100  # type: ignore[call-overload]
        supervisor = server.process.pid
        # Here the test process maps most of the same libraries (so their pages are not the
        # supervisor's alone): ~1.3 MB stays private to it without the release, 0 with it.
        private_clean_mb = smaps_kb(supervisor, "Private_Clean") / 1024
        assert private_clean_mb < 0.5, f"supervisor keeps {private_clean_mb:.2f} MB only it maps"

        workers = [
            pid
            for pid in children(supervisor)
            if b"health_main" not in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        assert len(workers) == 2
        before = len(_released(server.logs()))
        os.kill(workers[0], signal.SIGKILL)
        # The replacement forks from the trimmed supervisor, loads, listens: released again.
        wait_until(lambda: len(_released(server.logs())) > before, 30)
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for _ in range(20):  # new connections: both workers answer
                answer = client.post(
                    "/v1/models/tiny/predict", json=row, headers={"Connection": "close"}
                )
                assert (
                    answer.status_code == 200 and answer.json()["predictions"][0]["label"] == "high"
                )
