"""An operator's unload stands in a real server with two worker processes and polling on.

The unload goes to whichever worker the connection lands on; the poller runs in the first
worker only; every answer must agree whichever worker gives it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.api.test_repository import ROW, build_repository, touch_config
from tests.conftest import build_tiny_model
from tests.integration.server import running_server

pytestmark = pytest.mark.slow
TOKEN = "operator-token"
TRIES = 12  # requests per check: with two workers, each is asked several times


def every_answer(check: Callable[[], bool]) -> bool:
    return all(check() for _ in range(TRIES))


def eventually(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not every_answer(check):
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_operator_unloads_stand_and_load_back_in_every_worker(tmp_path: Path) -> None:
    repository = build_repository(tmp_path / "models", {"tiny": ["1", "2"], "other": ["9"]})
    env = {"FASTINFER_MODEL_REPOSITORY": str(repository), "FASTINFER_ADMIN_TOKEN": TOKEN}
    solo = build_tiny_model(tmp_path / "solo", name="solo")  # a directory argument
    args = ["--workers", "2", "--poll", "0.1", str(solo)]
    with (
        running_server(args, tmp_path / "server.log", env=env) as server,
        server.admin(TOKEN, timeout=30) as client,
    ):

        def status(path: str) -> int:
            return client.post(path, json=ROW).status_code

        def default(name: str) -> str | None:
            answer = client.post(f"/v1/models/{name}/predict", json=ROW)
            return answer.json().get("version") if answer.status_code == 200 else None

        def listed_state(name: str, version: str) -> str | None:
            models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
            versions = {v["version"]: v for v in models[name]["versions"]}
            return versions[version]["state"] if version in versions else None

        unloaded = client.post("/admin/models/tiny/versions/1/unload")
        assert unloaded.status_code == 200, unloaded.text
        assert set(unloaded.json()["workers"].values()) == {"applied"}
        assert client.post("/v2/repository/models/other/unload").status_code == 200
        build_repository(repository, {"tiny": ["3"]})  # a poll that loads it has seen the rest
        eventually(lambda: default("tiny") == "3", "the poller did not load version 3")
        assert every_answer(lambda: status("/v1/models/tiny/versions/1/predict") == 404)
        assert every_answer(lambda: status("/v1/models/other/predict") == 404)
        assert every_answer(lambda: listed_state("tiny", "1") == "unloaded")  # in every worker
        assert every_answer(lambda: listed_state("other", "9") == "unloaded")

        assert client.post("/admin/models/solo/versions/1/unload").status_code == 200
        assert every_answer(lambda: status("/v1/models/solo/predict") == 404)
        back = client.post("/admin/models/solo/versions/1/load")  # from where it came
        assert back.status_code == 200, back.text
        assert set(back.json()["workers"].values()) == {"applied"}
        assert every_answer(lambda: status("/v1/models/solo/predict") == 200)

        touch_config(repository / "tiny" / "1", "rebuilt")  # its files change: it may come back
        eventually(
            lambda: status("/v1/models/tiny/versions/1/predict") == 200,
            "an edited version was not loaded back by the poller",
        )
        assert every_answer(lambda: status("/v1/models/other/predict") == 404)
