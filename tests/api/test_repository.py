"""A model repository with several versions: routing, defaults, and the admin API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from fastinfer.config import Settings
from fastinfer.repository.registry import bare_artefact
from fastinfer.serving.app import create_app
from tests.conftest import build_tiny_model, serve_in_process, sha256_of, wait_ready

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROW = {"inputs": [{"x": 1, "colour": 0}]}


def build_repository(root: Path, versions: dict[str, list[str]]) -> Path:
    for name, names in versions.items():
        for version in names:
            directory = build_tiny_model(root / name / version, name=name, version=version)
            config = yaml.safe_load((directory / "model.yaml").read_text())
            del config["name"], config["version"]  # the path says them
            (directory / "model.yaml").write_text(yaml.safe_dump(config))
    return root


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    return build_repository(tmp_path / "models", {"tiny": ["1", "2"], "other": ["9", "10"]})


@pytest.fixture
def client(repository: Path) -> Iterator[TestClient]:
    with serve_in_process(model_repository=repository, admin_token=TOKEN) as client:
        wait_ready(client)
        yield client


def predict(client: TestClient, path: str) -> Any:
    return client.post(path, json=ROW)


def test_the_default_is_the_newest_version_and_versions_are_addressable(
    client: TestClient,
) -> None:
    response = predict(client, "/v1/models/tiny/predict")
    assert response.status_code == 200
    assert response.json()["version"] == "2"
    assert response.headers["x-model-version"] == "2"
    older = predict(client, "/v1/models/tiny/versions/1/predict")
    assert older.json()["version"] == "1"
    assert older.headers["x-model-version"] == "1"
    assert older.json()["predictions"] == response.json()["predictions"]
    assert predict(client, "/v1/models/other/predict").json()["version"] == "10"  # not "9"
    missing = predict(client, "/v1/models/tiny/versions/7/predict")
    assert missing.status_code == 404
    assert missing.json()["details"] == {"available": ["1", "2"]}
    listing = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert listing["tiny"]["version"] == "2"
    assert [(v["version"], v["default"]) for v in listing["tiny"]["versions"]] == [
        ("1", False),
        ("2", True),
    ]
    assert client.get("/v1/models/tiny/versions/1").json()["version"] == "1"
    assert client.get("/readyz").json()["models"] == {"other": "10", "tiny": "2"}
    paths = client.get("/openapi.json").json()["paths"]
    assert {
        "/v1/models/tiny/predict",
        "/v1/models/tiny/versions/1/predict",
        "/v1/models/tiny/versions/2/predict",
    } <= set(paths)


def test_admin_api_is_off_without_a_token_and_checks_it(repository: Path) -> None:
    with serve_in_process(model_repository=repository) as client:
        wait_ready(client)
        off = client.get("/admin/models", headers=AUTH)
        assert off.status_code == 403
        assert off.json()["code"] == "admin_disabled"
    with serve_in_process(model_repository=repository, admin_token=TOKEN) as client:
        wait_ready(client)
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            denied = client.post("/admin/models/tiny/versions/1/unload", headers=headers)
            assert denied.status_code == 401
            assert denied.headers["www-authenticate"].startswith("Bearer")
        assert predict(client, "/v1/models/tiny/versions/1/predict").status_code == 200


def test_load_pin_unpin_and_unload_versions(client: TestClient, repository: Path) -> None:
    build_repository(repository, {"tiny": ["3"]})
    loaded = client.post("/admin/models/tiny/versions/3/load", headers=AUTH)
    assert loaded.status_code == 200, loaded.text
    assert loaded.json()["changed"] is True
    assert loaded.json()["models"]["tiny"] == "3"
    assert predict(client, "/v1/models/tiny/predict").json()["version"] == "3"

    pinned = client.put("/admin/models/tiny/default", json={"version": "1"}, headers=AUTH)
    assert pinned.status_code == 200
    assert predict(client, "/v1/models/tiny/predict").json()["version"] == "1"
    assert client.get("/v1/models/tiny").json()["pinned"] is True

    client.put("/admin/models/tiny/default", json={"version": None}, headers=AUTH)
    assert predict(client, "/v1/models/tiny/predict").json()["version"] == "3"

    unloaded = client.post("/admin/models/tiny/versions/3/unload", headers=AUTH)
    assert unloaded.json()["models"]["tiny"] == "2"
    assert predict(client, "/v1/models/tiny/versions/3/predict").status_code == 404
    state = client.get("/admin/models", headers=AUTH).json()
    tiny = next(m for m in state["models"] if m["name"] == "tiny")
    assert [(v["version"], v["loaded"]) for v in tiny["versions"]] == [
        ("1", True),
        ("2", True),
        ("3", False),  # still in the repository
    ]
    nothing = client.post("/admin/models/tiny/versions/8/load", headers=AUTH)
    assert nothing.status_code == 404
    assert nothing.json()["details"] == {"available": ["1", "2", "3"]}
    unpinnable = client.put("/admin/models/tiny/default", json={"version": "3"}, headers=AUTH)
    assert unpinnable.status_code == 404


def _break_sha(directory: Path) -> None:
    config = yaml.safe_load((directory / "model.yaml").read_text())
    config["artefact"]["sha256"] = "0" * 64
    (directory / "model.yaml").write_text(yaml.safe_dump(config))


def _corrupt(directory: Path) -> None:
    from tests.conftest import sha256_of

    (directory / "model.joblib").write_bytes(b"this is not a pickle")
    config = yaml.safe_load((directory / "model.yaml").read_text())
    config["artefact"]["sha256"] = sha256_of(directory / "model.joblib")
    (directory / "model.yaml").write_text(yaml.safe_dump(config))


def _failing_self_test(directory: Path) -> None:
    config = yaml.safe_load((directory / "model.yaml").read_text())
    config["expected_example_output"] = "low"  # the example predicts "high"
    (directory / "model.yaml").write_text(yaml.safe_dump(config))


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        (_break_sha, "sha256 mismatch"),
        (_corrupt, "Error"),  # joblib: "IndexError: pop from empty list"
        (_failing_self_test, "SelfTestFailed"),
    ],
)
def test_a_version_that_fails_to_load_changes_nothing(
    client: TestClient, repository: Path, spoil: Any, reason: str
) -> None:
    build_repository(repository, {"tiny": ["3"]})
    spoil(repository / "tiny" / "3")
    refused = client.post("/admin/models/tiny/versions/3/load", headers=AUTH)
    assert refused.status_code == 422
    assert refused.json()["code"] == "load_failed"
    assert reason in refused.json()["details"]["failed"]["tiny/3"]
    assert predict(client, "/v1/models/tiny/predict").json()["version"] == "2"
    assert client.get("/readyz").status_code == 200
    state = client.get("/admin/models", headers=AUTH).json()
    tiny = next(m for m in state["models"] if m["name"] == "tiny")
    three = next(v for v in tiny["versions"] if v["version"] == "3")
    assert three["loaded"] is False
    assert reason in three["last_failure"]


def test_reload_swaps_in_rebuilt_files(client: TestClient, repository: Path) -> None:
    before = client.get("/v1/models/tiny/versions/2").json()["sha256"]
    directory = repository / "tiny" / "2"
    config = yaml.safe_load((directory / "model.yaml").read_text())
    config["description"] = "rebuilt"
    (directory / "model.yaml").write_text(yaml.safe_dump(config))
    reloaded = client.post("/admin/models/tiny/versions/2/reload", headers=AUTH)
    assert reloaded.status_code == 200, reloaded.text
    meta = client.get("/v1/models/tiny/versions/2").json()
    assert meta["description"] == "rebuilt"
    assert meta["sha256"] == before
    assert predict(client, "/v1/models/tiny/predict").json()["version"] == "2"
    health = client.get("/health").json()
    assert sorted(m["version"] for m in health["models"] if m["name"] == "tiny") == ["1", "2"]


def test_repository_sync_follows_the_folders(client: TestClient, repository: Path) -> None:
    build_repository(repository, {"tiny": ["5"], "fresh": ["1"]})
    import shutil

    shutil.rmtree(repository / "other")
    synced = client.post("/admin/repository/sync", headers=AUTH)
    assert synced.status_code == 200, synced.text
    assert synced.json()["models"] == {"fresh": "1", "tiny": "5"}
    assert predict(client, "/v1/models/other/predict").status_code == 404
    assert predict(client, "/v1/models/fresh/predict").status_code == 200


def test_polling_loads_new_versions(repository: Path) -> None:
    with serve_in_process(model_repository=repository, repository_poll_s=0.1) as client:
        wait_ready(client)
        build_repository(repository, {"tiny": ["4"]})
        import time

        deadline = time.monotonic() + 20
        while predict(client, "/v1/models/tiny/predict").json()["version"] != "4":
            assert time.monotonic() < deadline, "the poller did not load version 4"
            time.sleep(0.05)


def wait_for(check: Any, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def touch_config(directory: Path, description: str) -> None:
    """Edit a version's model.yaml (its files change: polling sees a new fingerprint)."""
    config = yaml.safe_load((directory / "model.yaml").read_text())
    config["description"] = description
    (directory / "model.yaml").write_text(yaml.safe_dump(config))


def test_polling_keeps_an_operator_unload_until_the_files_change(repository: Path) -> None:
    """An unload is the operator's decision: a poll of an unchanged folder must not undo it.
    Version 3 appearing proves polls ran after the unloads; editing version 1's files is what
    lets a poll load it again."""
    with serve_in_process(
        model_repository=repository, repository_poll_s=0.05, admin_token=TOKEN
    ) as client:
        wait_ready(client)
        one = client.post("/admin/models/tiny/versions/1/unload", headers=AUTH)
        assert one.status_code == 200, one.text
        assert client.post("/v2/repository/models/other/unload", headers=AUTH).status_code == 200
        build_repository(repository, {"tiny": ["3"]})
        wait_for(
            lambda: predict(client, "/v1/models/tiny/predict").json().get("version") == "3",
            "the poller did not load version 3",
        )
        assert predict(client, "/v1/models/tiny/versions/1/predict").status_code == 404
        assert predict(client, "/v1/models/other/predict").status_code == 404
        touch_config(repository / "tiny" / "1", "rebuilt")
        wait_for(
            lambda: predict(client, "/v1/models/tiny/versions/1/predict").status_code == 200,
            "an edited version was not loaded back by the poller",
        )
        assert predict(client, "/v1/models/other/predict").status_code == 404  # unchanged
        assert client.post("/v2/repository/models/other/load", headers=AUTH).status_code == 200
        assert predict(client, "/v1/models/other/predict").json()["version"] == "10"


def test_version_policy_latest_and_pinned_defaults(repository: Path) -> None:
    with serve_in_process(
        model_repository=repository, version_policy="latest", default_versions={"other": "10"}
    ) as client:
        wait_ready(client)
        listing = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
        assert [v["version"] for v in listing["tiny"]["versions"]] == ["2"]
        assert listing["other"]["pinned"] is True


def test_unloading_the_last_version_removes_the_model(client: TestClient) -> None:
    for version in ("9", "10"):
        response = client.post(f"/admin/models/other/versions/{version}/unload", headers=AUTH)
        assert response.status_code == 200, response.text
    assert client.get("/readyz").status_code == 200  # tiny still serves: the pod stays in
    assert "other" not in client.get("/readyz").json()["models"]
    assert predict(client, "/v1/models/other/predict").status_code == 404
    reloaded = client.post("/admin/models/other/versions/10/load", headers=AUTH)
    assert reloaded.status_code == 200, reloaded.text
    assert predict(client, "/v1/models/other/predict").json()["version"] == "10"


def test_the_pinned_version_is_not_unloaded_from_under_its_pin(client: TestClient) -> None:
    """Unloading the pinned version would silently send unversioned requests elsewhere: 409,
    naming the pin. Unloading the whole model keeps the pin for when it comes back."""
    assert client.put("/admin/models/tiny/default", json={"version": "1"}, headers=AUTH).is_success
    refused = client.post("/admin/models/tiny/versions/1/unload", headers=AUTH)
    assert refused.status_code == 409
    assert refused.json()["code"] == "version_pinned"
    assert refused.json()["details"] == {"pinned": "1"}
    assert "pinned default" in refused.json()["message"]
    assert predict(client, "/v1/models/tiny/predict").json()["version"] == "1"
    assert client.post("/admin/models/tiny/versions/2/unload", headers=AUTH).is_success

    assert client.post("/v2/repository/models/tiny/unload", headers=AUTH).status_code == 200
    assert predict(client, "/v1/models/tiny/predict").status_code == 404
    assert client.post("/v2/repository/models/tiny/load", headers=AUTH).status_code == 200
    assert predict(client, "/v1/models/tiny/predict").json()["version"] == "1"
    assert client.get("/v1/models/tiny").json()["pinned"] is True

    assert client.post("/admin/models/tiny/unload", headers=AUTH).is_success
    assert client.post("/admin/models/tiny/versions/2/load", headers=AUTH).is_success
    assert predict(client, "/v1/models/tiny/predict").json()["version"] == "2"  # 1 is not back
    assert client.post("/admin/models/tiny/versions/1/load", headers=AUTH).is_success
    assert predict(client, "/v1/models/tiny/predict").json()["version"] == "1"  # pinned again


def test_a_pin_from_the_settings_is_kept_too(repository: Path) -> None:
    with serve_in_process(
        model_repository=repository, default_versions={"other": "9"}, admin_token=TOKEN
    ) as client:
        wait_ready(client)
        refused = client.post("/admin/models/other/versions/9/unload", headers=AUTH)
        assert (refused.status_code, refused.json()["details"]) == (409, {"pinned": "9"})
        assert predict(client, "/v1/models/other/predict").json()["version"] == "9"
        unpinned = client.put("/admin/models/other/default", json={"version": None}, headers=AUTH)
        assert unpinned.is_success
        assert client.post("/admin/models/other/versions/9/unload", headers=AUTH).is_success
        assert predict(client, "/v1/models/other/predict").json()["version"] == "10"


def test_a_model_given_as_a_directory_loads_back_after_an_unload(tmp_path: Path) -> None:
    """It is in no repository: it loads back from where it came, through the admin API and
    the v2 `load`, with or without a repository beside it."""
    solo = build_tiny_model(tmp_path / "solo", name="solo")
    with serve_in_process(solo, admin_token=TOKEN) as client:
        wait_ready(client)
        assert client.post("/admin/models/solo/versions/1/unload", headers=AUTH).is_success
        assert predict(client, "/v1/models/solo/predict").status_code == 404
        loaded = client.post("/admin/models/solo/versions/1/load", headers=AUTH)
        assert loaded.status_code == 200, loaded.text
        assert loaded.json()["models"] == {"solo": "1"}
        assert predict(client, "/v1/models/solo/predict").json()["version"] == "1"
    repository = build_repository(tmp_path / "models", {"tiny": ["1"]})
    with serve_in_process(solo, model_repository=repository, admin_token=TOKEN) as client:
        wait_ready(client)
        assert client.post("/v2/repository/models/solo/unload", headers=AUTH).status_code == 200
        assert client.post("/admin/repository/sync", headers=AUTH).is_success
        assert predict(client, "/v1/models/solo/predict").status_code == 404
        loaded = client.post("/v2/repository/models/solo/load", headers=AUTH)
        assert loaded.status_code == 200, loaded.text
        assert predict(client, "/v1/models/solo/predict").json()["version"] == "1"
        never = client.post("/v2/repository/models/nothing/load", headers=AUTH)
        assert never.status_code == 404


def test_a_bare_artefact_loads_back_after_an_unload(tmp_path: Path) -> None:
    artefact = build_tiny_model(tmp_path / "bare") / "model.joblib"
    directory = bare_artefact("bare", artefact, sha256_of(artefact))
    app = create_app(Settings(admin_token=TOKEN), [directory])
    with TestClient(app, raise_server_exceptions=False) as client:
        wait_ready(client)
        assert client.post("/admin/models/bare/unload", headers=AUTH).is_success
        loaded = client.post("/admin/models/bare/versions/unversioned/load", headers=AUTH)
        assert loaded.status_code == 200, loaded.text
        answer = client.post("/v1/models/bare/predict", json=ROW)
        assert answer.status_code == 200, answer.text


def test_what_an_operator_unloaded_is_listed_as_unloaded(client: TestClient) -> None:
    """The operator's decision is visible: /v1/models, the v2 index and /admin/models say who
    unloaded what and when, and a request for it is told so."""
    assert client.post("/admin/models/tiny/versions/1/unload", headers=AUTH).is_success
    assert client.post("/v2/repository/models/other/unload", headers=AUTH).status_code == 200
    listing = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    tiny = listing["tiny"]
    assert (tiny["version"], tiny["state"], tiny["ready"]) == ("2", "ready", True)
    one, two = tiny["versions"]
    assert (one["version"], one["state"], one["ready"], one["default"]) == (
        "1",
        "unloaded",
        False,
        False,
    )
    assert one["unloaded_at"] is not None and "unloaded_by" not in one  # who: admins only
    assert (two["state"], two["unloaded_at"]) == ("ready", None)
    other = listing["other"]
    assert (other["state"], other["ready"], other["version"]) == ("unloaded", False, "10")
    assert [v["state"] for v in other["versions"]] == ["unloaded", "unloaded"]

    index = {(e["name"], e["version"]): e for e in client.post("/v2/repository/index").json()}
    for key in (("tiny", "1"), ("other", "9"), ("other", "10")):
        assert index[key]["state"] == "UNAVAILABLE"
        assert index[key]["reason"].startswith("unloaded by an operator at ")
    assert index[("tiny", "2")]["state"] == "READY"
    state = client.get("/admin/models", headers=AUTH).json()
    admin = {m["name"]: m for m in state["models"]}
    assert admin["tiny"]["versions"][0]["unloaded_by"] == "admin token"

    version = predict(client, "/v1/models/tiny/versions/1/predict")
    assert version.status_code == 404
    assert "unloaded by an operator" in version.json()["message"]
    model = predict(client, "/v1/models/other/predict")
    assert (model.status_code, model.json()["message"]) == (
        404,
        "model 'other' was unloaded by an operator",
    )
    assert client.post("/admin/models/tiny/versions/1/load", headers=AUTH).is_success
    listing = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert [v["state"] for v in listing["tiny"]["versions"]] == ["ready", "ready"]
