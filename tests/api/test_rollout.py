"""Staged versions, canary splits, promotion and rollback through the admin API (in-process)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.test_metrics import scrape
from tests.api.test_repository import AUTH, TOKEN, _failing_self_test, build_repository, predict
from tests.conftest import serve_in_process, wait_ready


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    return build_repository(tmp_path / "models", {"tiny": ["1"]})


@pytest.fixture
def staging(repository: Path) -> Iterator[TestClient]:
    """A server that stages new versions (FASTINFER_NEW_VERSIONS=stage)."""
    settings: dict[str, Any] = {"new_versions": "stage", "admin_token": TOKEN}
    with serve_in_process(model_repository=repository, **settings) as client:
        wait_ready(client)
        yield client


def default(client: TestClient, body: dict[str, Any]) -> Any:
    return client.put("/admin/models/tiny/default", json=body, headers=AUTH)


def roles(client: TestClient) -> dict[str, tuple[str | None, int | None]]:
    (tiny,) = [m for m in client.get("/v1/models").json()["models"] if m["name"] == "tiny"]
    return {v["version"]: (v["role"], v["weight"]) for v in tiny["versions"]}


def answered_by(client: TestClient, requests: int) -> Counter[str]:
    answers: Counter[str] = Counter()
    for _ in range(requests):
        response = predict(client, "/v1/models/tiny/predict")
        assert response.status_code == 200, response.text
        assert response.headers["x-model-version"] == response.json()["version"]
        answers[response.json()["version"]] += 1
    return answers


def test_a_synced_version_arrives_staged_and_is_promoted_then_rolled_back(
    staging: TestClient, repository: Path
) -> None:
    build_repository(repository, {"tiny": ["2"]})
    synced = staging.post("/admin/repository/sync", headers=AUTH)
    assert synced.status_code == 200, synced.text
    assert synced.json()["models"] == {"tiny": "1"}  # loaded, but the default stays
    assert answered_by(staging, 5) == {"1": 5}
    assert predict(staging, "/v1/models/tiny/versions/2/predict").json()["version"] == "2"
    assert roles(staging) == {"1": ("default", None), "2": ("staged", None)}
    state = staging.get("/admin/models", headers=AUTH).json()["models"][0]
    assert state["staged"] == ["2"]

    promoted = default(staging, {"version": "2"})
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["models"] == {"tiny": "2"}
    assert answered_by(staging, 5) == {"2": 5}
    assert roles(staging) == {"1": (None, None), "2": ("default", None)}

    rolled_back = default(staging, {"version": "1"})
    assert rolled_back.json()["models"] == {"tiny": "1"}
    assert answered_by(staging, 5) == {"1": 5}
    # another sync changes nothing: the operator's choice stands
    assert staging.post("/admin/repository/sync", headers=AUTH).json()["changed"] is False


def test_an_admin_load_can_stage_or_promote(repository: Path) -> None:
    build_repository(repository, {"tiny": ["2", "3"]})
    with serve_in_process(model_repository=repository, admin_token=TOKEN) as client:
        wait_ready(client)
        client.post("/admin/models/tiny/versions/3/unload", headers=AUTH)
        client.post("/admin/models/tiny/versions/2/unload", headers=AUTH)
        staged = client.post("/admin/models/tiny/versions/2/load?stage=true", headers=AUTH)
        assert staged.status_code == 200, staged.text
        assert staged.json()["models"] == {"tiny": "1"}
        loaded = client.post("/admin/models/tiny/versions/3/load", headers=AUTH)
        assert loaded.json()["models"] == {"tiny": "3"}  # today's behaviour by default
        assert roles(client) == {
            "1": (None, None),
            "2": ("staged", None),
            "3": ("default", None),
        }


def test_a_split_answers_by_weight_and_names_each_answer(
    staging: TestClient, repository: Path
) -> None:
    build_repository(repository, {"tiny": ["2"]})
    staging.post("/admin/repository/sync", headers=AUTH)
    split = default(staging, {"split": {"1": 90, "2": 10}})
    assert split.status_code == 200, split.text
    assert split.json()["models"] == {"tiny": "1"}
    assert split.json()["splits"] == {"tiny": {"1": 90, "2": 10}}
    assert roles(staging) == {"1": ("split", 90), "2": ("split", 10)}
    listing = staging.get("/v1/models/tiny").json()
    assert (listing["version"], listing["split"]) == ("1", {"1": 90, "2": 10})
    assert answered_by(staging, 50) == {"1": 45, "2": 5}  # one process: exact
    values = scrape(staging)
    key = "fastinfer_requests_total{{model=tiny,protocol=v1,status=200,version={}}}"
    assert (values[key.format("1")], values[key.format("2")]) == (45, 5)

    # the whole default moves to the canary, then back: both stay loaded throughout
    assert default(staging, {"version": "2"}).json()["splits"] == {}
    assert answered_by(staging, 3) == {"2": 3}
    assert default(staging, {"version": None}).json()["models"] == {"tiny": "2"}


def test_splits_and_defaults_are_checked(staging: TestClient, repository: Path) -> None:
    build_repository(repository, {"tiny": ["2"]})
    staging.post("/admin/repository/sync", headers=AUTH)
    unknown = default(staging, {"split": {"1": 90, "7": 10}})
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "version_not_found"
    assert unknown.json()["details"] == {"loaded": ["1", "2"]}
    for body in (
        {"split": {"1": 90, "2": 0}},
        {"split": {"1": -1, "2": 10}},
        {"split": {"1": 1.5}},
        {"split": {}},
        {"split": None},
        {"version": "1", "split": {"1": 1}},
        {},
    ):
        refused = default(staging, body)
        assert refused.status_code == 422, (body, refused.text)
    assert answered_by(staging, 3) == {"1": 3}  # nothing changed

    assert default(staging, {"split": {"1": 1, "2": 1}}).status_code == 200
    pinned_down = staging.post("/admin/models/tiny/versions/2/unload", headers=AUTH)
    assert pinned_down.status_code == 409
    assert pinned_down.json()["code"] == "version_in_split"
    assert pinned_down.json()["details"] == {"split": {"1": 1, "2": 1}}
    assert answered_by(staging, 4) == {"1": 2, "2": 2}
    gone = staging.post("/admin/models/tiny/unload", headers=AUTH)  # the whole model may go
    assert gone.status_code == 200, gone.text


def test_a_version_that_failed_to_load_is_not_made_the_default(repository: Path) -> None:
    build_repository(repository, {"tiny": ["2"]})
    _failing_self_test(repository / "tiny" / "2")
    with serve_in_process(model_repository=repository, admin_token=TOKEN) as client:
        wait_ready(client)  # version 2 failed at startup: 1 answers
        for body in ({"version": "2"}, {"split": {"1": 90, "2": 10}}):
            refused = default(client, body)
            assert refused.status_code == 409, refused.text
            assert refused.json()["code"] == "version_not_ready"
            assert "SelfTestFailed" in refused.json()["message"]
        assert answered_by(client, 3) == {"1": 3}


def test_the_rollout_cli_stages_splits_promotes_and_rolls_back(
    repository: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from fastinfer.cli import app, rollout

    build_repository(repository, {"tiny": ["2"]})
    with serve_in_process(model_repository=repository, admin_token=TOKEN) as client:
        wait_ready(client)
        client.post("/admin/models/tiny/versions/2/unload", headers=AUTH)

        def send(method: str, url: str, token: str, body: Any, timeout: float) -> tuple[int, Any]:
            path = url.removeprefix("http://server")
            headers = {"Authorization": f"Bearer {token}"}
            response = client.request(method, path, json=body, headers=headers)
            return response.status_code, response.json()

        monkeypatch.setattr(rollout, "_send", send)
        runner = CliRunner()

        def run(*args: str) -> Any:
            return runner.invoke(app, ["rollout", *args, "--token", TOKEN])

        staged = run("stage", "http://server", "tiny", "2")
        assert staged.exit_code == 0, staged.output
        assert "tiny: default 1 (generation" in staged.output
        assert "1/1 processes applied" in staged.output
        split = run("split", "http://server", "tiny", "1=90", "2=10")
        assert split.exit_code == 0, split.output
        assert "tiny: default 1=90 / 2=10" in split.output
        assert answered_by(client, 10) == {"1": 9, "2": 1}
        status = run("status", "http://server", "tiny")
        assert status.output.splitlines() == ["tiny 1: ready, split 90", "tiny 2: ready, split 10"]
        assert "tiny: default 2 " in run("promote", "http://server", "tiny", "2").output
        assert answered_by(client, 3) == {"2": 3}
        assert "tiny: default 1 " in run("rollback", "http://server", "tiny", "1").output
        assert answered_by(client, 3) == {"1": 3}

        unknown = run("split", "http://server", "tiny", "1=90", "7=10")
        assert unknown.exit_code == 1
        assert "refused (404 version_not_found)" in unknown.output
        bad = run("split", "http://server", "tiny", "1=ninety")
        assert bad.exit_code == 2
        assert "VERSION=WEIGHT" in bad.output
        wrong = runner.invoke(app, ["rollout", "promote", "http://server", "tiny", "1"])
        assert wrong.exit_code in (1, 2)  # no token (or a wrong one from the environment)
