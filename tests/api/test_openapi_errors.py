"""The OpenAPI document's error examples: each status shows the code a client really gets with it
(one example for every status taught clients to expect `invalid_input` everywhere)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from fastinfer.security.keys import hash_key
from tests.conftest import serve_in_process, wait_ready

# What a predict call answers with each status (errors.py, engine/errors.py, security/keys.py).
PREDICT_CODES = {
    "400": "malformed_request",
    "401": "unauthorized",
    "403": "forbidden",
    "404": "model_not_found",
    "413": "payload_too_large",
    "415": "unsupported_media_type",
    "422": "invalid_input",
    "429": "rate_limited",
    "500": "inference_failed",
    "503": "overloaded",
    "504": "deadline_exceeded",
}
# Every code the service answers with, by status: any other route's example must be one of them.
CODES_BY_STATUS = {
    "400": {"malformed_request"},
    "401": {"unauthorized"},
    "403": {"forbidden", "admin_disabled"},
    "404": {"model_not_found", "version_not_found", "prediction_not_found", "not_found"},
    "409": {"busy", "version_pinned", "no_reference", "feedback_disabled"},
    "413": {"payload_too_large"},
    "415": {"unsupported_media_type"},
    "422": {"invalid_input", "invalid_request", "load_failed", "rejected"},
    "429": {"rate_limited", "quota_exceeded"},
    "500": {"inference_failed", "internal_error"},
    "503": {"overloaded", "model_not_ready", "not_ready", "stalled"},
    "504": {"deadline_exceeded"},
}
ERROR_FIELDS = {"code", "message", "details", "request_id"}


def _error_examples(document: dict[str, Any]) -> list[tuple[str, str, str, Any]]:
    """(path, method, status, example) of every documented 4xx/5xx answer."""
    found = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation.get("responses", {}).items():
                if status[0] in "45":
                    media = response.get("content", {}).get("application/json", {})
                    found.append((path, method, status, media.get("example")))
    return found


def test_each_error_status_has_an_example_with_its_own_code(tiny_client: TestClient) -> None:
    document = tiny_client.get("/openapi.json").json()
    examples = _error_examples(document)
    assert examples
    for path, method, status, example in examples:
        where = f"{method.upper()} {path} {status}"
        assert isinstance(example, dict), f"{where} has no example"
        if path.startswith("/v2/"):
            assert set(example) == {"error"} and example["error"], where
        else:
            assert example["code"] in CODES_BY_STATUS[status], f"{where}: {example['code']}"
            # (FastAPI leaves a null `details` out of the document)
            assert {"code", "message", "request_id"} <= set(example) <= ERROR_FIELDS, where
    predict = document["paths"]["/v1/models/tiny/predict"]["post"]["responses"]
    shown = {
        s: r["content"]["application/json"]["example"]["code"]
        for s, r in predict.items()
        if s[0] in "45"
    }
    assert shown == {s: c for s, c in PREDICT_CODES.items() if s in shown}
    assert set(shown) >= {"400", "404", "413", "415", "422", "500", "503", "504"}
    # FastAPI's own 422 is documented in the shape the service answers it with.
    metadata = document["paths"]["/v1/models/{name}"]["get"]["responses"]["422"]
    assert metadata["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")


def test_keyed_operations_document_401_403_and_429(tiny_dir: Path) -> None:
    keys = [{"name": "partner", "sha256": hash_key("partner-key"), "rate": 5}]
    with serve_in_process(tiny_dir, api_keys=keys) as client:
        wait_ready(client)
        document = client.get("/openapi.json", headers={"X-API-Key": "partner-key"}).json()
    for path in ("/v1/models/tiny/predict", "/v2/models/{name}/infer"):
        responses = document["paths"][path]["post"]["responses"]
        assert {"401", "403", "429"} <= set(responses), path
    predict = document["paths"]["/v1/models/tiny/predict"]["post"]["responses"]
    shown = {
        s: r["content"]["application/json"]["example"]["code"]
        for s, r in predict.items()
        if s[0] in "45"
    }
    assert shown == PREDICT_CODES
    assert "401" not in document["paths"]["/readyz"]["get"]["responses"]  # probes are open
