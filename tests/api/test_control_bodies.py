"""Routes other than predict and infer: their bodies are read under a small limit, and the
admin routes check the caller before reading anything (issue 14: no body limit on feedback,
the v2 repository index and /admin; admin parsed the body before checking the token)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import serve_in_process, wait_ready

LIMIT = 2048


@pytest.fixture
def client(tiny_dir: Path) -> Iterator[TestClient]:
    with serve_in_process(
        tiny_dir, max_control_body_bytes=LIMIT, admin_token="s3cret-admin-token"
    ) as client:
        wait_ready(client)
        yield client


def _chunks(total: int) -> Iterator[bytes]:
    """A body sent without Content-Length (chunked), as a streaming client sends it."""
    sent = 0
    while sent < total:
        yield b"x" * 1024
        sent += 1024


@pytest.mark.parametrize(
    "path",
    ["/v1/models/tiny/feedback", "/v2/repository/index"],
)
def test_control_bodies_over_the_limit_are_413(client: TestClient, path: str) -> None:
    declared = client.post(
        path, content=b"{" + b" " * (LIMIT * 4) + b"}", headers={"content-type": "application/json"}
    )
    assert declared.status_code == 413
    streamed = client.post(path, content=_chunks(LIMIT * 8))
    assert streamed.status_code == 413
    body = streamed.json()
    assert ("error" in body) if path.startswith("/v2") else body["code"] == "payload_too_large"
    small = client.post(path, json={"request_id": "nope", "outcome": 1})
    assert small.status_code in (200, 404, 409)  # a body under the limit reaches the route


def test_admin_checks_the_token_before_reading_the_body(client: TestClient) -> None:
    junk = {"content-type": "application/json"}
    no_token = client.post("/admin/repository/sync", content=b"{not json", headers=junk)
    assert no_token.status_code == 401  # not 422: the body was never parsed
    huge = client.post("/admin/repository/sync", content=_chunks(LIMIT * 64))
    assert huge.status_code == 401  # refused before the body, however large
    wrong = client.put(
        "/admin/models/tiny/default",
        content=b"[[[",
        headers={**junk, "authorization": "Bearer wrong"},
    )
    assert wrong.status_code == 401
    v2 = client.post("/v2/repository/models/tiny/load", content=b"{not json", headers=junk)
    assert v2.status_code == 401 and "error" in v2.json()


def test_with_the_admin_api_off_admin_routes_are_403_before_any_body(tiny_dir: Path) -> None:
    with serve_in_process(tiny_dir) as client:
        wait_ready(client)
        response = client.post("/admin/repository/sync", content=b"{not json")
        assert response.status_code == 403
        assert response.json()["code"] == "admin_disabled"
