"""fastinfer_saturation from a real server process under closed-loop load: low when idle, rising
with load, high when saturated, for a model bound by inference and for one bound by the event
loop. Behaviour, not timings: each phase polls the gauge (bounded) until it says what it should.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx2 as httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import build_scripted_model
from tests.integration.debian import require_tool
from tests.integration.keepalive import assert_none_failed, predicting
from tests.integration.server import free_port, running_server

pytestmark = pytest.mark.slow

TITANIC = Path(__file__).resolve().parents[2] / "examples" / "titanic"
PREDICT = "/v1/models/scripted/predict"
WAIT_S = 20.0  # a phase's bound: the gauge averages over a few seconds


def gauges(health_port: int) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{health_port}/metrics", timeout=5).text
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            stage = sample.labels.get("stage")
            values[f"{sample.name}:{stage}" if stage else sample.name] = sample.value
    return values


def poll(health_port: int, done: Callable[[dict[str, float]], bool]) -> dict[str, float]:
    """The gauges once `done` says so, or the last ones after WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    values = gauges(health_port)
    while not done(values) and time.monotonic() < deadline:
        time.sleep(0.5)
        values = gauges(health_port)
    return values


def saturation(values: dict[str, float]) -> float:
    return values.get("fastinfer_saturation", 0.0)


def stage(values: dict[str, float], name: str) -> float:
    return values.get(f"fastinfer_stage_saturation:{name}", 0.0)


def sampled_and_idle(values: dict[str, float], below: float) -> bool:
    """The server process has published a sample (its capacity), and it reads below `below`."""
    return values.get("fastinfer_capacity", 0.0) >= 1 and saturation(values) < below


def test_a_model_bound_by_inference_reads_low_idle_and_past_one_when_requests_queue(
    tmp_path: Path,
) -> None:
    # One request per batch, 20 ms each: one worker answers 50 requests a second at most.
    model = build_scripted_model(tmp_path / "scripted", batching={"max_batch_size": 1})
    health_port = free_port()
    args = [str(model), "--workers", "1", "--health-port", str(health_port)]
    body = {"inputs": [{"x": 1, "sleep": 0.02}]}
    with running_server(args, tmp_path / "log") as server:
        idle = poll(health_port, lambda v: sampled_and_idle(v, 0.2))
        assert sampled_and_idle(idle, 0.2)
        # Closed-loop clients: one, pausing (a third of the worker's time), then 8 at once (7
        # always wait for the worker).
        with predicting(server.url, 1, PREDICT, body, timeout=30, pause_s=0.04) as answers:
            light = poll(health_port, lambda v: stage(v, "inference") > 0.2)
        assert_none_failed(answers)
        with predicting(server.url, 8, PREDICT, body, timeout=30) as answers:
            full = poll(health_port, lambda v: saturation(v) >= 1.5)
        assert_none_failed(answers)
        after = poll(health_port, lambda v: saturation(v) < 0.2)
    assert saturation(idle) < saturation(light) < 0.8 < 1.5 <= saturation(full)
    assert (
        full["fastinfer_stage_saturation:inference"]
        >= full["fastinfer_stage_saturation:event_loop"]
    )
    assert saturation(after) < 0.2  # the average forgets the load


def test_a_fast_model_bound_by_the_event_loop_reads_past_one_when_saturated(
    tmp_path: Path,
) -> None:
    wrk_bin = require_tool("wrk", "wrk", needed_for="load fast enough to saturate the event loop")
    health_port = free_port()
    args = [str(TITANIC), "--workers", "1", "--health-port", str(health_port)]
    body = tmp_path / "body.json"
    body.write_text(
        '{"inputs": [{"PassengerId": 1, "Pclass": 3, "Name": "Braund, Mr. Owen Harris", '
        '"Sex": "male", "Age": 22, "SibSp": 1, "Parch": 0, "Ticket": "A/5 21171", '
        '"Fare": 7.25, "Cabin": null, "Embarked": "S"}]}'
    )
    lua = Path(__file__).resolve().parents[2] / "bench" / "wrk" / "post.lua"
    with running_server(args, tmp_path / "log") as server:
        assert (
            httpx.post(
                f"{server.url}/v1/models/titanic/predict",
                content=body.read_bytes(),
                headers={"Content-Type": "application/json"},
            ).status_code
            == 200
        )
        idle = poll(health_port, lambda v: sampled_and_idle(v, 0.3))
        wrk = subprocess.Popen(
            [wrk_bin, "-t2", "-c64", f"-d{int(WAIT_S) + 10}s", "-s", str(lua),
             f"{server.url}/v1/models/titanic/predict", "--", str(body)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            full = poll(health_port, lambda v: saturation(v) >= 1.0)
        finally:
            wrk.terminate()
            wrk.wait(timeout=30)
    assert sampled_and_idle(idle, 0.3)
    assert saturation(full) >= 1.0
    assert (
        full["fastinfer_stage_saturation:event_loop"] > full["fastinfer_stage_saturation:inference"]
    )
