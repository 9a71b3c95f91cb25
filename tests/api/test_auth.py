"""API keys: 401 without a valid key, 403 outside a key's scope or models, probes open."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fastinfer.config import Settings
from fastinfer.security.keys import (
    Access,
    Guard,
    hash_key,
    is_loopback,
    load_specs,
    required_scope,
    warn_if_unprotected,
)
from fastinfer.serving.app import create_app
from tests.conftest import build_tiny_model, serve_in_process, wait_ready

PREDICT_KEY = "predict-key-0123456789"
ADMIN_KEY = "admin-key-0123456789"
TINY_ONLY_KEY = "tiny-only-key-0123456789"
LEGACY_TOKEN = "legacy-admin-token-0123456789"
KEYS = [
    {"name": "team-a", "sha256": hash_key(PREDICT_KEY), "scopes": ["predict"]},
    {"name": "ops", "sha256": hash_key(ADMIN_KEY), "scopes": ["predict", "admin"]},
    {"name": "team-b", "sha256": hash_key(TINY_ONLY_KEY), "models": ["tiny"]},
]
ROW = {"inputs": [{"x": 1, "colour": 0}]}
V2_ROW = {
    "inputs": [
        {"name": "x", "datatype": "FP64", "shape": [1], "data": [1.0]},
        {"name": "colour", "datatype": "INT64", "shape": [1], "data": [0]},
    ]
}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def models(tmp_path: Path) -> list[Path]:
    return [
        build_tiny_model(tmp_path / "tiny", name="tiny"),
        build_tiny_model(tmp_path / "other", name="other"),
    ]


@pytest.fixture
def client(models: list[Path]) -> Iterator[TestClient]:
    with serve_in_process(*models, api_keys=KEYS, admin_token=LEGACY_TOKEN) as client:
        wait_ready(client)
        yield client


def test_a_key_is_needed_and_checked(client: TestClient) -> None:
    for headers in ({}, bearer("wrong"), {"Authorization": PREDICT_KEY}, {"X-API-Key": "nope"}):
        for method, path, body in (
            ("POST", "/v1/models/tiny/predict", ROW),
            ("POST", "/v2/models/tiny/infer", V2_ROW),
            ("GET", "/v1/models", None),
            ("GET", "/v1/nonexistent", None),
        ):
            denied = client.request(method, path, json=body, headers=headers)
            assert denied.status_code == 401, (headers, path)
            assert denied.headers["www-authenticate"].startswith("Bearer")
            assert denied.headers["x-request-id"]
            if path.startswith("/v2/"):
                assert set(denied.json()) == {"error"}
            else:
                assert denied.json()["code"] == "unauthorized"
    ok = client.post("/v1/models/tiny/predict", json=ROW, headers=bearer(PREDICT_KEY))
    assert ok.status_code == 200, ok.text
    assert client.post("/v2/models/tiny/infer", json=V2_ROW, headers=bearer(PREDICT_KEY)).is_success
    assert client.get("/v1/models/tiny", headers={"X-API-Key": PREDICT_KEY}).status_code == 200
    via_header = client.post(
        "/v1/models/tiny/predict", json=ROW, headers={"X-API-Key": PREDICT_KEY}
    )
    assert via_header.status_code == 200


def test_probes_docs_and_metrics_are_open(client: TestClient) -> None:
    for path in ("/livez", "/readyz", "/v2/health/live", "/v2/health/ready"):
        assert client.get(path).status_code == 200, path
    # /health shows versions, the git revision, pid and every model: a key's business (issue 14).
    assert client.get("/health").status_code == 401
    assert client.get("/health", headers=bearer(PREDICT_KEY)).status_code == 200
    for path in ("/docs", "/openapi.json", "/metrics"):
        assert client.get(path).status_code == 200, path


def test_scopes_and_model_lists(client: TestClient) -> None:
    forbidden = client.get("/admin/models", headers=bearer(PREDICT_KEY))
    assert forbidden.status_code == 403
    assert forbidden.json()["code"] == "forbidden"
    assert client.get("/admin/models", headers=bearer(ADMIN_KEY)).status_code == 200
    assert client.get("/admin/models", headers=bearer(LEGACY_TOKEN)).status_code == 200
    # the legacy admin token is an admin key, not a predict key
    legacy = client.post("/v1/models/tiny/predict", json=ROW, headers=bearer(LEGACY_TOKEN))
    assert legacy.status_code == 403
    assert client.post("/v2/repository/models/tiny/unload", headers=bearer(PREDICT_KEY)).json() == {
        "error": "the API key 'team-a' lacks the 'admin' scope"
    }

    tiny_only = bearer(TINY_ONLY_KEY)
    assert client.post("/v1/models/tiny/predict", json=ROW, headers=tiny_only).status_code == 200
    for method, path, body in (
        ("POST", "/v1/models/other/predict", ROW),
        ("POST", "/v1/models/other/versions/1/predict", ROW),
        ("GET", "/v1/models/other", None),
        ("POST", "/v2/models/other/infer", V2_ROW),
        ("GET", "/v2/models/other", None),
        ("GET", "/v1/models/other/drift", None),
    ):
        assert client.request(method, path, json=body, headers=tiny_only).status_code == 403, path
    listed = client.get("/v1/models", headers=tiny_only).json()["models"]
    assert [m["name"] for m in listed] == ["tiny"]
    everything = client.get("/v1/models", headers=bearer(PREDICT_KEY)).json()["models"]
    assert sorted(m["name"] for m in everything) == ["other", "tiny"]


def test_who_unloaded_a_version_is_told_to_admins_only(client: TestClient) -> None:
    """An unload by the "ops" key: a predict key sees that (and when) an operator unloaded the
    model, never the admin key's name; /admin/models names it."""
    unloaded = client.post("/v2/repository/models/other/unload", headers=bearer(ADMIN_KEY))
    assert unloaded.status_code == 200
    listing = client.get("/v1/models", headers=bearer(PREDICT_KEY))
    index = client.post("/v2/repository/index", headers=bearer(PREDICT_KEY))
    assert listing.status_code == index.status_code == 200
    other = next(m for m in listing.json()["models"] if m["name"] == "other")
    assert other["state"] == "unloaded" and other["versions"][0]["unloaded_at"]
    entry = next(e for e in index.json() if e["name"] == "other")
    assert entry["reason"].startswith("unloaded by an operator at ")
    for answer in (listing, index):
        assert "ops" not in answer.text.replace("operator", "")
    admin = client.get("/admin/models", headers=bearer(ADMIN_KEY)).json()["models"]
    versions = next(m for m in admin if m["name"] == "other")["versions"]
    assert versions[0]["unloaded_by"] == "api key 'ops'"


def test_metrics_count_failures_and_can_need_a_key(models: list[Path]) -> None:
    with serve_in_process(*models, api_keys=KEYS, metrics_auth=True) as client:
        wait_ready(client)
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers=bearer(PREDICT_KEY)).status_code == 403
        client.get("/v1/models", headers=bearer("wrong"))
        client.app.state.metrics.flush()  # type: ignore[attr-defined]
        text = client.get("/metrics", headers=bearer(ADMIN_KEY)).text
        assert 'fastinfer_auth_failures_total{reason="missing"} 1.0' in text
        assert 'fastinfer_auth_failures_total{reason="invalid"} 1.0' in text
        assert 'fastinfer_auth_failures_total{reason="scope"} 1.0' in text


def test_the_key_never_appears_in_answers_or_logs(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "wrong-key-that-must-not-leak"
    answers: list[Any] = []
    with caplog.at_level(logging.DEBUG):
        for key in (PREDICT_KEY, wrong, TINY_ONLY_KEY):
            for path in ("/v1/models/tiny/predict", "/v1/models/other/predict", "/admin/models"):
                answers.append(client.post(path, json=ROW, headers=bearer(key)))
    text = " ".join(r.text + str(dict(r.headers)) for r in answers)
    logged = " ".join(str(r.msg) + r.getMessage() for r in caplog.records)
    access = [r.msg for r in caplog.records if isinstance(r.msg, dict) and "api_key" in r.msg]
    assert {m["api_key"] for m in access} >= {"team-a", "team-b"}  # names, not keys
    for secret in (PREDICT_KEY, wrong, TINY_ONLY_KEY, hash_key(PREDICT_KEY)):
        assert secret not in text
        assert secret not in logged


def test_auth_is_off_without_keys_and_the_admin_token_alone_keeps_working(
    models: list[Path],
) -> None:
    with serve_in_process(*models, admin_token=LEGACY_TOKEN) as client:
        wait_ready(client)
        assert client.app.guard is None  # type: ignore[attr-defined]
        assert client.post("/v1/models/tiny/predict", json=ROW).status_code == 200
        assert client.get("/admin/models").status_code == 401
        assert client.get("/admin/models", headers=bearer(LEGACY_TOKEN)).status_code == 200


def test_keys_from_a_file_and_bad_configurations(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(KEYS[:1]))
    specs = load_specs(Settings(api_keys_file=path, api_keys=KEYS[1:2]))
    assert [s.name for s in specs] == ["ops", "team-a"]
    with pytest.raises(ValueError, match="unique"):
        load_specs(Settings(api_keys=[KEYS[0], KEYS[0]]))
    with pytest.raises(ValueError):
        Settings(api_keys=[{**KEYS[0], "scopes": ["everything"]}])
    with pytest.raises(ValueError):
        Settings(api_keys=[{**KEYS[0], "sha256": PREDICT_KEY}])  # a plaintext key, not a hash


def test_every_route_declares_what_it_needs() -> None:
    """The route table (compiled from the app's routes) gives the guard each route's access;
    a route that declares nothing needs the predict scope, and so does a path no route serves."""
    table = create_app(Settings(), directories=[]).routes

    def needs(method: str, path: str) -> tuple[str | None, str | None]:
        match = table.match(method, path)
        access = match.route.access if match is not None else Access.PREDICT
        model = match.model if match is not None and access is Access.PREDICT else None
        return required_scope(access, metrics_auth=False, docs_auth=False), model

    assert needs("GET", "/livez") == (None, None)
    assert needs("GET", "/v2/health/ready") == (None, None)
    assert needs("GET", "/_assets/docs/swagger-ui.css") == (None, None)
    assert needs("GET", "/openapi.json") == (None, None)
    assert needs("POST", "/v1/models/tiny/versions/2/predict") == ("predict", "tiny")
    assert needs("POST", "/v2/models/tiny/infer") == ("predict", "tiny")
    assert needs("POST", "/v1/models/tiny/feedback") == ("predict", "tiny")
    assert needs("POST", "/v2/repository/models/tiny/load") == ("admin", None)
    assert needs("PUT", "/admin/models/tiny/default") == ("admin", None)
    assert needs("POST", "/v2/repository/index") == ("predict", None)
    assert needs("GET", "/no/such/route") == ("predict", None)
    assert needs("POST", "/v1/models//predict") == ("predict", None)  # an empty name: no route
    assert required_scope(Access.METRICS, metrics_auth=True, docs_auth=True) == "metrics"
    assert required_scope(Access.DOCS, metrics_auth=True, docs_auth=True) == "predict"


def test_the_route_table_lists_every_route_the_app_serves() -> None:
    """Nothing the app serves escapes the table (and so the guard's declared access)."""
    app = create_app(Settings(), directories=[])
    served = {(r.method, r.template) for r in app.routes.routes}
    for method, path in [
        ("GET", "/v1/models/{name}/drift"),
        ("POST", "/admin/repository/sync"),
        ("GET", "/docs"),
        ("GET", "/metrics"),
    ]:
        assert (method, path) in served


def test_the_match_compares_every_key() -> None:
    guard = Guard(load_specs(Settings(api_keys=KEYS)))
    assert guard._match(TINY_ONLY_KEY.encode()) is not None
    assert guard._match(b"") is None


def test_hash_key_cli_round_trips() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fastinfer", "hash-key", "--name", "team-a", "--model", "tiny"],
        input=PREDICT_KEY + "\n",
        capture_output=True,
        text=True,
        check=True,
    )
    digest, entry = done.stdout.splitlines()
    assert digest == hash_key(PREDICT_KEY)
    assert PREDICT_KEY not in done.stdout
    spec = load_specs(Settings(api_keys=[json.loads(entry)]))[0]
    assert (spec.name, spec.sha256, spec.models) == ("team-a", digest, ["tiny"])
    made = subprocess.run(
        [sys.executable, "-m", "fastinfer", "new-key", "--scope", "admin"],
        capture_output=True,
        text=True,
        check=True,
    )
    key_line, entry_line = made.stdout.splitlines()
    key = key_line.rsplit(" ", 1)[1]
    made_entry = json.loads(entry_line.split(": ", 1)[1])
    assert made_entry["sha256"] == hash_key(key)
    assert made_entry["scopes"] == ["admin"]


def test_warning_on_a_public_address_without_keys(capsys: pytest.CaptureFixture[str]) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert is_loopback("127.8.9.10") and is_loopback("[::1]")
    assert not is_loopback("0.0.0.0") and not is_loopback("") and not is_loopback("example.com")
    assert not warn_if_unprotected(Settings(host="127.0.0.1"))
    assert not warn_if_unprotected(Settings(host="0.0.0.0", api_keys=KEYS))
    assert capsys.readouterr().err == ""
    assert warn_if_unprotected(Settings(host="0.0.0.0"))
    assert "authentication OFF" in capsys.readouterr().err
