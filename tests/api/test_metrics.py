"""Prometheus metrics of one in-process server."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import build_scripted_model, serve_in_process, wait_ready


def scrape(client: TestClient) -> dict[str, float]:
    """Sample name + sorted labels → value."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}"] = sample.value
    return values


def test_requests_latency_batches_and_model_info(tiny_client: TestClient) -> None:
    for _ in range(5):
        ok = tiny_client.post("/v1/models/tiny/predict", json={"inputs": [{"x": 1, "colour": 0}]})
        assert ok.status_code == 200
    bad = tiny_client.post("/v1/models/tiny/predict", json={"inputs": [{"x": "a", "colour": 0}]})
    assert bad.status_code == 422
    v2 = tiny_client.post(
        "/v2/models/tiny/infer",
        json={
            "inputs": [
                {"name": "x", "datatype": "FP64", "shape": [2], "data": [1.0, 2.0]},
                {"name": "colour", "datatype": "INT64", "shape": [2], "data": [0, 1]},
            ]
        },
    )
    assert v2.status_code == 200
    time.sleep(0.4)  # one sampling round for the gauges
    values = scrape(tiny_client)
    ok_key = "fastinfer_requests_total{model=tiny,protocol=v1,status=200,version=1}"
    assert values[ok_key] == 5
    assert values["fastinfer_requests_total{model=tiny,protocol=v1,status=422,version=1}"] == 1
    assert values["fastinfer_requests_total{model=tiny,protocol=v2,status=200,version=1}"] == 1
    assert values["fastinfer_request_duration_seconds_count{model=tiny,protocol=v1}"] == 6
    assert values["fastinfer_batch_rows_count{model=tiny}"] == 6  # one batch per request
    assert values["fastinfer_batch_rows_sum{model=tiny}"] == 7  # 5 one-row + one two-row
    assert values["fastinfer_inference_seconds_count{model=tiny}"] == 6
    assert values["fastinfer_queue_wait_seconds_count{model=tiny}"] == 6
    info = [k for k in values if k.startswith("fastinfer_model_info{")]
    assert len(info) == 1 and "version=1" in info[0] and "sha256=" in info[0]
    assert values["fastinfer_capacity{}"] == 1  # one server process
    assert 0 <= values["fastinfer_saturation{}"] < 1  # idle between requests
    assert values["fastinfer_in_flight_requests{model=tiny}"] == 0


def test_rejections_by_reason_and_saturation_under_load(tmp_path: Path) -> None:
    directory = build_scripted_model(
        tmp_path / "scripted", batching={"max_batch_size": 1, "max_queue_size": 1}
    )
    with serve_in_process(directory, shed_hold_s=0) as client:  # the 503 at once, mid-load
        wait_ready(client)
        from concurrent.futures import ThreadPoolExecutor

        def post(sleep: float) -> int:
            response = client.post(
                "/v1/models/scripted/predict", json={"inputs": [{"x": 1, "sleep": sleep}]}
            )
            return response.status_code

        with ThreadPoolExecutor(4) as pool:
            busy = pool.submit(post, 1.5)
            time.sleep(0.2)
            queued = pool.submit(post, 0.0)
            time.sleep(0.2)
            shed = pool.submit(post, 0.0)
            assert shed.result() == 503
            time.sleep(0.8)  # sampled while the worker is busy and one request waits
            during = scrape(client)
            assert busy.result() == 200 and queued.result() == 200
        assert during["fastinfer_rejections_total{model=scripted,reason=queue_full}"] == 1
        assert during["fastinfer_queued_requests{model=scripted}"] == 1
        assert during["fastinfer_in_flight_requests{model=scripted}"] == 2
        assert during["fastinfer_saturation{}"] > 0.5  # a busy worker and a full batch waiting
