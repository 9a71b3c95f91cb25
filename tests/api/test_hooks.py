"""Per-model async pre- and post-predict hooks."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from tests.conftest import build_tiny_model, serve_in_process, wait_ready

HOOKS = """
import asyncio
import json
import os

from fastinfer.model.hooks import Reject

async def double_x(rows, context):
    return [{**row, "x": row["x"] * 2} for row in rows]


async def refuse_negative(rows, context):
    if any(row["x"] < 0 for row in rows):
        raise Reject("x must not be negative")


async def broken(rows, context):
    raise RuntimeError("a bug in a pre-hook")


async def slow(rows, context):
    await asyncio.sleep(5)


async def record(rows, predictions, context):
    await asyncio.sleep(0.2)
    line = json.dumps([context.request_id, context.version, rows, predictions])
    with open(os.environ["HOOK_RECORD"], "a") as handle:
        handle.write(line + "\\n")


async def post_broken(rows, predictions, context):
    raise RuntimeError("a bug in a post-hook")


def not_async(rows, context):
    return rows
"""


def hooked_model(directory: Path, pre: list[str], post: list[str], timeout_ms: float = 100) -> Path:
    build_tiny_model(directory)
    (directory / "tiny_hooks.py").write_text(HOOKS)
    config = yaml.safe_load((directory / "model.yaml").read_text())
    config["code_paths"] = ["tiny_hooks.py"]
    config["hooks"] = {"pre": pre, "post": post, "timeout_ms": timeout_ms}
    (directory / "model.yaml").write_text(yaml.safe_dump(config))
    return directory


@pytest.fixture
def fresh_hooks() -> Iterator[None]:
    """Each test imports the hooks module from its own model directory."""
    sys.modules.pop("tiny_hooks", None)
    yield
    sys.modules.pop("tiny_hooks", None)


def predict(client: TestClient, x: float) -> Any:
    return client.post("/v1/models/tiny/predict", json={"inputs": [{"x": x, "colour": 0}]})


def test_a_pre_hook_transforms_and_can_reject(tmp_path: Path, fresh_hooks: None) -> None:
    plain = build_tiny_model(tmp_path / "plain")
    with serve_in_process(plain) as client:
        wait_ready(client)
        assert predict(client, 3).json()["predictions"][0]["label"] == "low"
    directory = hooked_model(
        tmp_path / "tiny", ["tiny_hooks:refuse_negative", "tiny_hooks:double_x"], []
    )
    with serve_in_process(directory) as client:
        wait_ready(client)
        assert predict(client, 3).json()["predictions"][0]["label"] == "high"  # saw x = 6
        refused = predict(client, -1)
        assert refused.status_code == 422
        assert refused.json()["code"] == "rejected"
        assert refused.json()["message"] == "x must not be negative"
        v2 = client.post(
            "/v2/models/tiny/infer",
            json={
                "inputs": [
                    {"name": "x", "datatype": "FP64", "shape": [1], "data": [-1.0]},
                    {"name": "colour", "datatype": "INT64", "shape": [1], "data": [0]},
                ]
            },
        )
        assert v2.status_code == 422 and v2.json() == {"error": "x must not be negative"}
        hooks = client.get("/health").json()["models"][0]["hooks"]
        assert hooks["rejections"] == 2


def test_a_broken_or_slow_pre_hook_never_fails_the_request(
    tmp_path: Path, fresh_hooks: None
) -> None:
    directory = hooked_model(tmp_path / "tiny", ["tiny_hooks:broken", "tiny_hooks:slow"], [])
    with serve_in_process(directory) as client:
        wait_ready(client)
        response = predict(client, 3)
        assert response.status_code == 200
        assert response.json()["predictions"][0]["label"] == "low"  # the rows as sent
        hooks = client.get("/health").json()["models"][0]["hooks"]
        assert (hooks["pre_failures"], hooks["pre_timeouts"]) == (1, 1)


def test_a_hook_that_is_not_async_fails_the_load_with_a_reason(tmp_path: Path) -> None:
    directory = hooked_model(tmp_path / "tiny", ["tiny_hooks:not_async"], [])
    with serve_in_process(directory) as client:
        for _ in range(200):
            ready = client.get("/readyz")
            if "failed" in str(ready.json()):
                break
            time.sleep(0.02)
        assert ready.status_code == 503
        assert "must be an async function" in ready.json()["details"]["models"]["tiny"]
    sys.modules.pop("tiny_hooks", None)
