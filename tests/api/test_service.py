"""Listing, metadata, request ids, probes, docs and OpenAPI, in-process."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient

from tests.conftest import build_tiny_model, serve_in_process, wait_ready, write_config


def test_predict_answers_labels_probabilities_and_version(tiny_client: TestClient) -> None:
    response = tiny_client.post(
        "/v1/models/tiny/predict", json={"inputs": [{"x": 7, "colour": 1}, {"x": 0, "colour": 0}]}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "tiny"
    assert body["version"] == "1"
    assert body["request_id"] == response.headers["x-request-id"]
    first, second = body["predictions"]
    assert first["label"] == "high" and second["label"] == "low"
    assert set(first["probabilities"]) == {"high", "low"}
    assert abs(sum(first["probabilities"].values()) - 1) < 1e-5
    assert first["probabilities"]["high"] > 0.5 > second["probabilities"]["high"]


def test_request_id_is_echoed_or_generated(tiny_client: TestClient) -> None:
    echoed = tiny_client.get("/livez", headers={"x-request-id": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    generated = tiny_client.get("/livez")
    assert len(generated.headers["x-request-id"]) == 32
    hostile = tiny_client.get("/livez", headers={"x-request-id": "x" * 500})
    assert hostile.headers["x-request-id"] != "x" * 500
    predicted = tiny_client.post(
        "/v1/models/tiny/predict",
        json={"inputs": [{"x": 1, "colour": 0}]},
        headers={"x-request-id": "trace-7"},
    )
    assert predicted.json()["request_id"] == "trace-7"


def test_models_list_and_metadata(tiny_client: TestClient, tiny_dir: Path) -> None:
    listing = tiny_client.get("/v1/models").json()
    assert listing == {
        "models": [
            {
                "name": "tiny",
                "version": "1",
                "runtime": "sklearn",
                "ready": True,
                "state": "ready",
                "pinned": False,
                "split": None,
                "versions": [
                    {
                        "version": "1",
                        "state": "ready",
                        "ready": True,
                        "default": True,
                        "role": "default",
                        "weight": None,
                        "unloaded_at": None,
                    }
                ],
            }
        ]
    }
    meta = tiny_client.get("/v1/models/tiny").json()
    import hashlib

    expected_sha = hashlib.sha256((tiny_dir / "model.joblib").read_bytes()).hexdigest()
    assert meta["sha256"] == expected_sha
    assert meta["self_test"] == "passed"
    assert meta["output"] == {"kind": "classifier", "labels": ["high", "low"]}
    schema = meta["input_schema"]
    assert schema["required"] == ["x", "colour"]
    assert schema["properties"]["colour"]["enum"] == [0, 1]
    assert schema["additionalProperties"] is False
    assert meta["example"] == {"x": 6.5, "colour": 1}


def test_probes_and_health(tiny_client: TestClient) -> None:
    assert tiny_client.get("/livez").json() == {"status": "alive"}
    assert tiny_client.get("/readyz").json() == {"status": "ready", "models": {"tiny": "1"}}
    health = tiny_client.get("/health").json()
    assert health["status"] == "ready"
    assert health["uptime_seconds"] >= 0
    assert health["python"].startswith("3.")
    assert health["git_revision"]
    assert health["models"] == [
        {
            "name": "tiny",
            "version": "1",
            "state": "ready",
            "reason": None,
            "default": True,
            "in_flight": 0,
            "hooks": None,
        }
    ]
    assert {"booted_at", "version"} <= set(health)


def test_readyz_fails_with_reason_on_sha_mismatch(tmp_path: Path) -> None:
    directory = build_tiny_model(tmp_path / "tiny")
    with (directory / "model.joblib").open("ab") as handle:
        handle.write(b"tampered")
    with serve_in_process(directory) as client:
        deadline = time.monotonic() + 30
        while client.get("/v1/models/tiny").json()["state"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        response = client.get("/readyz")
        assert response.status_code == 503
        body = response.json()
        assert body["code"] == "not_ready"
        reason = body["details"]["models"]["tiny"]
        assert "sha256 mismatch" in reason and "model.joblib" in reason
        # Open to anyone: no directories, no exception class names (issue 14, item 9).
        for text in (reason, body["message"]):
            assert str(tmp_path) not in text and "IntegrityError" not in text
        assert client.get("/livez").status_code == 200
        predict = client.post("/v1/models/tiny/predict", json={"inputs": [{"x": 1, "colour": 0}]})
        assert predict.status_code == 503
        assert predict.json()["code"] == "model_not_ready"
        assert str(tmp_path) not in predict.text and "IntegrityError" not in predict.text


def test_readyz_fails_when_self_test_output_is_wrong(tmp_path: Path) -> None:
    import yaml

    directory = build_tiny_model(tmp_path / "tiny")
    config = yaml.safe_load((directory / "model.yaml").read_text())
    config["expected_example_output"] = "low"  # the example row is really 'high'
    write_config(directory, config)
    with serve_in_process(directory) as client:
        deadline = time.monotonic() + 30
        while client.get("/v1/models/tiny").json()["state"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        body = client.get("/readyz").json()
        reason = body["details"]["models"]["tiny"]
        assert "the config expects" in reason and "SelfTestFailed" not in reason  # no class names


def test_docs_are_served_without_a_cdn(tiny_client: TestClient) -> None:
    redirect = tiny_client.get("/", follow_redirects=False)
    assert redirect.status_code in (302, 307) and redirect.headers["location"] == "/docs"
    for page in ("/docs", "/redoc"):
        html = tiny_client.get(page).text
        assert "cdn.jsdelivr" not in html and "fonts.googleapis" not in html and "unpkg" not in html
    swagger = tiny_client.get("/docs").text
    for asset in ("/_assets/docs/swagger-ui-bundle.js", "/_assets/docs/swagger-ui.css"):
        assert asset in swagger
        assert tiny_client.get(asset).status_code == 200
    assert "/_assets/docs/redoc.standalone.js" in tiny_client.get("/redoc").text
    bundle = tiny_client.get("/_assets/docs/redoc.standalone.js")
    assert bundle.status_code == 200 and "javascript" in bundle.headers["content-type"]
    assert b"cdn.redoc.ly" not in bundle.content  # its logo: the one request beyond the server


def test_openapi_types_each_model_with_a_working_example(tiny_client: TestClient) -> None:
    document = tiny_client.get("/openapi.json").json()
    operation = document["paths"]["/v1/models/tiny/predict"]["post"]
    content = operation["requestBody"]["content"]["application/json"]
    assert content["schema"] == {"$ref": "#/components/schemas/TinyPredictRequest"}
    schemas = document["components"]["schemas"]
    row = schemas["TinyRow"]
    assert row["properties"]["colour"]["enum"] == [0, 1]
    assert schemas["TinyPredictRequest"]["properties"]["inputs"]["items"] == {
        "$ref": "#/components/schemas/TinyRow"
    }
    response_schema = schemas["TinyPredictResponse"]
    prediction = response_schema["properties"]["predictions"]["items"]
    assert prediction["properties"]["label"]["enum"] == ["high", "low"]
    for status in ("400", "404", "413", "415", "422", "500", "503", "504"):
        assert operation["responses"][status]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorBody"
        }
    # "Try it out" sends exactly this example: it must succeed.
    tried = tiny_client.post("/v1/models/tiny/predict", json=content["example"])
    assert tried.status_code == 200
    assert "/v1/models/{name}/predict" not in document["paths"]


def test_cors_is_off_unless_configured(tiny_dir: Path) -> None:
    with serve_in_process(tiny_dir) as client:
        response = client.options(
            "/v1/models",
            headers={"origin": "http://evil.example", "access-control-request-method": "GET"},
        )
        assert "access-control-allow-origin" not in response.headers
    with serve_in_process(tiny_dir, cors_origins=["http://app.example"]) as client:
        wait_ready(client)
        response = client.get("/v1/models", headers={"origin": "http://app.example"})
        assert response.headers["access-control-allow-origin"] == "http://app.example"


def test_bare_artefact_without_pin_is_refused_unless_trusted(tiny_dir: Path) -> None:
    from fastinfer.config import Settings
    from fastinfer.repository.registry import parse_model_option
    from fastinfer.serving.app import create_app
    from tests.conftest import sha256_of

    artefact = tiny_dir / "model.joblib"
    refused = create_app(Settings(), [parse_model_option(f"bare={artefact}")])
    with TestClient(refused) as client:
        deadline = time.monotonic() + 30
        while client.get("/v1/models/bare").json()["state"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        reason = client.get("/readyz").json()["details"]["models"]["bare"]
        assert "no sha256 pin" in reason and "--trust-unpinned" in reason

    pinned = create_app(
        Settings(), [parse_model_option(f"bare={artefact}#sha256:{sha256_of(artefact)}")]
    )
    with TestClient(pinned) as client:
        wait_ready(client)
        assert client.get("/v1/models/bare").json()["version"] == "unversioned"


def test_cross_origin_predictions_get_cors_headers(tiny_dir: Path) -> None:
    with serve_in_process(tiny_dir, cors_origins=["http://app.example"]) as client:
        wait_ready(client)
        response = client.post(
            "/v1/models/tiny/predict",
            json={"inputs": [{"x": 7, "colour": 1}]},
            headers={"origin": "http://app.example", "x-request-id": "cors-1"},
        )
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "http://app.example"
        assert response.headers["x-request-id"] == "cors-1"
        assert response.json()["predictions"][0]["label"] == "high"
        bad = client.post(
            "/v1/models/tiny/predict",
            json={"inputs": [{"x": "no"}]},
            headers={"origin": "http://app.example"},
        )
        assert bad.status_code == 422
        assert bad.json()["request_id"] == bad.headers["x-request-id"]
        assert bad.json()["details"][0]["field"] == "x"
