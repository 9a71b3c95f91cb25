"""Per-key token buckets: 429 with Retry-After past a key's burst; other keys unaffected."""

from __future__ import annotations

import json
import time
from pathlib import Path

from fastinfer.config import Settings
from fastinfer.security.keys import Guard, hash_key, load_specs
from fastinfer.security.ratelimit import TokenBucket, retry_after, share
from tests.conftest import build_tiny_model, serve_in_process, wait_ready

ROW = {"inputs": [{"x": 1, "colour": 0}]}
KEYS = [
    {"name": "limited", "sha256": hash_key("limited-key"), "rate": 5, "burst": 5},
    {"name": "slow", "sha256": hash_key("slow-key"), "rate": 0.5, "burst": 1},
    {"name": "free", "sha256": hash_key("free-key")},
]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_bucket_allows_the_burst_then_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=2.0, burst=3.0, clock=clock)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == 0.5  # one token comes in 1/rate seconds
    clock.now += 0.25
    assert bucket.take() == 0.25
    clock.now += 0.25
    assert bucket.take() == 0.0
    clock.now += 100  # refills to the burst, no more
    assert [bucket.take() for _ in range(4)] == [0.0, 0.0, 0.0, 0.5]
    assert retry_after(0.01) == 1 and retry_after(1.2) == 2


def test_each_process_gets_its_share() -> None:
    assert share(50.0, 100.0, 4) == (12.5, 25.0)
    assert share(2.0, None, 4) == (0.5, 1.0)  # a process's burst is at least one request
    guard = Guard(load_specs(Settings(api_keys=KEYS)), processes=2)
    assert guard.limits == {"limited": 2.5, "slow": 0.25}


def test_429_with_retry_after_and_other_keys_unaffected(tmp_path: Path) -> None:
    model = build_tiny_model(tmp_path / "tiny")
    with serve_in_process(model, api_keys=KEYS) as client:
        wait_ready(client)
        slow = {"X-API-Key": "slow-key"}
        assert client.post("/v1/models/tiny/predict", json=ROW, headers=slow).status_code == 200
        limited = client.post("/v1/models/tiny/predict", json=ROW, headers=slow)
        assert limited.status_code == 429
        assert limited.json()["code"] == "rate_limited"
        assert int(limited.headers["retry-after"]) >= 1
        assert limited.headers["x-ratelimit-limit"] == "0.5"
        assert limited.headers["x-ratelimit-remaining"] == "0"
        v2 = client.post("/v2/models/tiny/infer", json={}, headers=slow)
        assert v2.status_code == 429 and set(v2.json()) == {"error"}

        headers = {"X-API-Key": "limited-key"}
        statuses = [
            client.post("/v1/models/tiny/predict", json=ROW, headers=headers).status_code
            for _ in range(6)
        ]
        assert statuses[:5] == [200] * 5 and statuses[5] == 429
        free = {"X-API-Key": "free-key"}
        assert all(
            client.post("/v1/models/tiny/predict", json=ROW, headers=free).status_code == 200
            for _ in range(20)
        )
        time.sleep(0.25)  # a token of "limited" (5/s) is back; Retry-After said at most 1 s
        assert client.post("/v1/models/tiny/predict", json=ROW, headers=headers).status_code == 200

        client.app.state.metrics.flush()  # type: ignore[attr-defined]
        text = client.get("/metrics").text
        assert 'fastinfer_rate_limited_total{key="limited"} 1.0' in text
        assert 'fastinfer_rate_limited_total{key="slow"} 2.0' in text
        assert 'fastinfer_rate_limit_requests_per_second{key="limited"} 5.0' in text


def test_a_daily_quota_answers_429_quota_exceeded(tmp_path: Path) -> None:
    model = build_tiny_model(tmp_path / "tiny")
    keys = [{"name": "trial", "sha256": hash_key("trial-key"), "daily_quota": 3}]
    with serve_in_process(model, api_keys=keys) as client:
        wait_ready(client)
        headers = {"X-API-Key": "trial-key"}
        answers = [
            client.post("/v1/models/tiny/predict", json=ROW, headers=headers) for _ in range(4)
        ]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert answers[3].json()["code"] == "quota_exceeded"
        # one request's worth of the quota comes back in a day / 3 = 8 hours
        assert 28_000 <= int(answers[3].headers["retry-after"]) <= 28_800


def test_every_answer_to_a_rate_limited_key_says_its_limit(tmp_path: Path) -> None:
    """X-RateLimit-* on every answer (v1, v2, FastAPI routes, errors), not only on the 429, so
    a client can pace itself; nothing for keys without a rate."""
    model = build_tiny_model(tmp_path / "tiny")
    keys = [
        # so slow a refill that no token comes back during the test: Remaining is exact
        {"name": "paced", "sha256": hash_key("paced-key"), "rate": 0.01, "burst": 5},
        {
            "name": "both",
            "sha256": hash_key("both-key"),
            "rate": 0.01,
            "burst": 5,
            "daily_quota": 1,
        },
        {"name": "free", "sha256": hash_key("free-key")},
    ]
    with serve_in_process(model, api_keys=keys) as client:
        wait_ready(client)
        paced = {"X-API-Key": "paced-key"}
        v2_row = {
            "inputs": [
                {"name": "x", "datatype": "FP64", "shape": [1], "data": [1.0]},
                {"name": "colour", "datatype": "INT64", "shape": [1], "data": [0]},
            ]
        }
        answers = [
            client.post("/v1/models/tiny/predict", json=ROW, headers=paced),
            client.post("/v2/models/tiny/infer", json=v2_row, headers=paced),
            client.get("/v1/models/tiny", headers=paced),  # a FastAPI route
            client.post("/v1/models/tiny/predict", json={"inputs": [{}]}, headers=paced),  # 422
            client.post("/v2/models/tiny/infer", json={}, headers=paced),  # 400
            client.post("/v1/models/tiny/predict", json=ROW, headers=paced),  # 429
        ]
        assert [a.status_code for a in answers] == [200, 200, 200, 422, 400, 429]
        for used, answer in enumerate(answers, start=1):
            assert answer.headers["x-ratelimit-limit"] == "0.01"
            assert answer.headers["x-ratelimit-remaining"] == str(max(0, 5 - used))
            # seconds until the bucket is full again: the used tokens at 0.01 a second
            assert 99 * min(used, 5) <= int(answer.headers["x-ratelimit-reset"]) <= 100 * used
        assert int(answers[-1].headers["retry-after"]) >= 1

        both = {"X-API-Key": "both-key"}
        first = client.post("/v1/models/tiny/predict", json=ROW, headers=both)
        over_quota = client.post("/v1/models/tiny/predict", json=ROW, headers=both)
        assert (first.status_code, over_quota.status_code) == (200, 429)
        assert over_quota.json()["code"] == "quota_exceeded"
        assert over_quota.headers["x-ratelimit-remaining"] == "3"  # the rate's bucket

        free = client.post("/v1/models/tiny/predict", json=ROW, headers={"X-API-Key": "free-key"})
        probe = client.get("/readyz")
        for answer in (free, probe):
            assert answer.status_code == 200
            assert not [h for h in answer.headers if h.lower().startswith("x-ratelimit")]


def test_new_key_sets_rate_burst_and_daily_quota() -> None:
    from typer.testing import CliRunner

    from fastinfer.cli import app

    runner = CliRunner()
    made = runner.invoke(
        app,
        ["new-key", "--name", "partner", "--rate", "5", "--burst", "20", "--daily-quota", "1000"],
    )
    assert made.exit_code == 0, made.output
    entry = json.loads(made.output.splitlines()[1].split(": ", 1)[1])
    spec = load_specs(Settings(api_keys=[entry]))[0]
    assert (spec.rate, spec.burst, spec.daily_quota) == (5.0, 20.0, 1000)
    assert "rate" not in json.loads(
        runner.invoke(app, ["new-key"]).output.splitlines()[1].split(": ", 1)[1]
    )
    for bad in (["--burst", "20"], ["--rate", "0"], ["--daily-quota", "0"]):
        refused = runner.invoke(app, ["new-key", *bad])
        assert refused.exit_code != 0, bad
