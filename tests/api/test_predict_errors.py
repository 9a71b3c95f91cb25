"""Every client mistake gets a clear 4xx in one shape, and the service keeps answering."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import pytest
from fastapi.testclient import TestClient

from tests.conftest import serve_in_process, sha256_of, wait_ready, write_config

ERROR_KEYS = {"code", "message", "details", "request_id"}


def assert_error(response, status: int, code: str) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == ERROR_KEYS
    assert body["code"] == code
    assert body["request_id"] == response.headers["x-request-id"]
    return body


def still_serving(client: TestClient) -> None:
    response = client.post("/v1/models/tiny/predict", json={"inputs": [{"x": 7, "colour": 0}]})
    assert response.status_code == 200
    assert response.json()["predictions"][0]["label"] == "high"


def test_bad_row_names_row_field_and_allowed_values(tiny_client: TestClient) -> None:
    rows = [{"x": 1, "colour": 0}, {"x": 2, "colour": 5}, {"x": "big", "colour": 1, "extra": 1}]
    body = assert_error(
        tiny_client.post("/v1/models/tiny/predict", json={"inputs": rows}), 422, "invalid_input"
    )
    problems = {(d["row"], d["field"]): d["problem"] for d in body["details"]}
    assert problems[(1, "colour")] == "must be one of 0 or 1"
    assert problems[(2, "x")] == "must be a valid number"
    assert "unknown field" in problems[(2, "extra")]
    assert (0, "x") not in problems
    assert "row 1, field 'colour'" in body["message"]
    still_serving(tiny_client)


def test_missing_required_field_and_range(tiny_client: TestClient) -> None:
    rows = [{"colour": 1}, {"x": 1000, "colour": 1}]
    body = assert_error(
        tiny_client.post("/v1/models/tiny/predict", json={"inputs": rows}), 422, "invalid_input"
    )
    problems = {(d["row"], d["field"]): d["problem"] for d in body["details"]}
    assert problems[(0, "x")] == "required field is missing"
    assert "less than or equal to 100" in problems[(1, "x")]


@pytest.mark.parametrize(
    "payload",
    [b'{"inputs": [', b"not json at all", b'{"inputs": [{"x": NaN, "colour": 1}]', b"\xff\xfe"],
)
def test_malformed_json_is_400(tiny_client: TestClient, payload: bytes) -> None:
    response = tiny_client.post(
        "/v1/models/tiny/predict", content=payload, headers={"content-type": "application/json"}
    )
    body = assert_error(response, 400, "malformed_request")
    assert "not valid JSON" in body["message"]
    still_serving(tiny_client)


@pytest.mark.parametrize(
    "payload", [b"[]", b'{"rows": []}', b'{"inputs": []}', b'{"inputs": {"x": 1}}', b"null"]
)
def test_wrong_body_shape_is_422(tiny_client: TestClient, payload: bytes) -> None:
    response = tiny_client.post(
        "/v1/models/tiny/predict", content=payload, headers={"content-type": "application/json"}
    )
    assert_error(response, 422, "invalid_input")


def test_nan_is_rejected(tiny_client: TestClient) -> None:
    response = tiny_client.post(
        "/v1/models/tiny/predict",
        content=b'{"inputs": [{"x": NaN, "colour": 1}]}',
        headers={"content-type": "application/json"},
    )
    body = assert_error(response, 422, "invalid_input")
    assert body["details"][0]["field"] == "x"
    assert "finite" in body["details"][0]["problem"]


def test_unknown_model_is_404(tiny_client: TestClient) -> None:
    body = assert_error(
        tiny_client.post("/v1/models/nope/predict", json={}), 404, "model_not_found"
    )
    assert body["details"] == {"available": ["tiny"]}
    assert_error(tiny_client.get("/v1/models/nope"), 404, "model_not_found")
    assert_error(tiny_client.get("/no/such/route"), 404, "not_found")


def test_wrong_content_type_is_415(tiny_client: TestClient) -> None:
    for headers in (
        {"content-type": "text/plain"},
        {"content-type": "application/x-www-form-urlencoded"},
        {},
    ):
        response = tiny_client.post(
            "/v1/models/tiny/predict",
            content=b'{"inputs": [{"x": 1, "colour": 0}]}',
            headers=headers,
        )
        assert_error(response, 415, "unsupported_media_type")
    ok = tiny_client.post(
        "/v1/models/tiny/predict",
        content=b'{"inputs": [{"x": 1, "colour": 0}]}',
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert ok.status_code == 200


def test_too_many_rows_is_413(tiny_dir: Path) -> None:
    with serve_in_process(tiny_dir, max_rows=3) as client:
        wait_ready(client)
        rows = [{"x": 1, "colour": 0}] * 4
        body = assert_error(
            client.post("/v1/models/tiny/predict", json={"inputs": rows}), 413, "payload_too_large"
        )
        assert body["details"] == {"rows": 4, "max_rows": 3}
        assert client.post("/v1/models/tiny/predict", json={"inputs": rows[:3]}).status_code == 200


def test_too_large_body_is_413_declared_and_streamed(tiny_dir: Path) -> None:
    with serve_in_process(tiny_dir, max_body_bytes=2048) as client:
        wait_ready(client)
        big = b'{"inputs": [' + b",".join([b'{"x": 1, "colour": 0}'] * 200) + b"]}"
        declared = client.post(
            "/v1/models/tiny/predict", content=big, headers={"content-type": "application/json"}
        )
        assert_error(declared, 413, "payload_too_large")

        def chunks():  # no Content-Length: the limit is enforced while reading
            for start in range(0, len(big), 512):
                yield big[start : start + 512]

        streamed = client.post(
            "/v1/models/tiny/predict",
            content=chunks(),
            headers={"content-type": "application/json"},
        )
        assert_error(streamed, 413, "payload_too_large")


def test_method_not_allowed_is_405(tiny_client: TestClient) -> None:
    assert_error(tiny_client.get("/v1/models/tiny/predict"), 405, "method_not_allowed")
    assert_error(tiny_client.delete("/livez"), 405, "method_not_allowed")


BOOM_MODULE = '''
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


class Boom(BaseEstimator, ClassifierMixin):
    """Fails on x == 13, with an internal message that must never reach a client."""

    def fit(self, X, y):
        self.classes_ = np.array(["no", "yes"])
        self.feature_names_in_ = np.array(["x"], dtype=object)
        return self

    def predict(self, X):
        return self.classes_[(self.predict_proba(X)[:, 1] > 0.5).astype(int)]

    def predict_proba(self, X):
        if (X["x"] == 13).any():
            raise ValueError("secret detail in /srv/private/model.py")
        p = np.clip(X["x"].to_numpy(dtype=float) / 10.0, 0, 1)
        return np.column_stack([1 - p, p])
'''


@pytest.fixture
def boom_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "boom"
    directory.mkdir()
    (directory / "boom_model.py").write_text(BOOM_MODULE)
    monkeypatch.syspath_prepend(str(directory))
    import boom_model  # type: ignore[import-not-found]

    artefact = directory / "model.joblib"
    joblib.dump(boom_model.Boom().fit(None, None), artefact)
    return write_config(
        directory,
        {
            "name": "boom",
            "version": "1",
            "artefact": {"path": "model.joblib", "sha256": sha256_of(artefact)},
            "code_paths": ["boom_model.py"],
            "inputs": [{"name": "x", "type": "number"}],
            "example": {"x": 1},
        },
    )


def test_model_exception_is_500_without_internals(boom_dir: Path) -> None:
    with serve_in_process(boom_dir) as client:
        wait_ready(client)
        response = client.post(
            "/v1/models/boom/predict",
            json={"inputs": [{"x": 13}]},
            headers={"x-request-id": "req-boom-1"},
        )
        body = assert_error(response, 500, "inference_failed")
        assert body["request_id"] == "req-boom-1"
        text = response.text
        for leak in ("secret", "/srv/private", "Traceback", "ValueError", "boom_model"):
            assert leak not in text
        ok = client.post("/v1/models/boom/predict", json={"inputs": [{"x": 9}]})
        assert ok.status_code == 200
        assert ok.json()["predictions"][0]["label"] == "yes"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"x": 7, "colour": 1}, 'this looks like one row; send {"inputs": [{...}]}'),
        ([{"x": 7, "colour": 1}], "not a bare list of rows"),
        ({"input": [{"x": 7, "colour": 1}]}, "it has 'input' and no \"inputs\""),
        ({"inputs": {"x": 7, "colour": 1}}, '"inputs" must be a list of rows, even for one row'),
        ({"inputs": []}, '"inputs" must hold at least one row'),
        (
            {"inputs": [{"x": 7, "colour": 1}], "extra": 1},
            "'extra' is not part of it (only \"inputs\")",
        ),
        ("hi", "not a string"),
    ],
    ids=["bare-row", "bare-list", "typo", "row-not-list", "empty", "extra-key", "string"],
)
def test_a_body_without_the_inputs_wrapper_says_what_the_body_must_be(
    tiny_client: TestClient, body: Any, says: str
) -> None:
    """A bare row was reported as `inputs` missing plus an "unknown field" per field (issue 16)."""
    response = tiny_client.post("/v1/models/tiny/predict", json=body)
    error = assert_error(response, 422, "invalid_input")
    (problem,) = error["details"]
    assert problem["row"] is None and problem["field"] is None
    assert (
        problem["problem"]
        == 'the body must be {"inputs": [row, ...]}'
        + (", " if says.startswith("not ") else ": ")
        + says
    )
    assert "unknown field" not in response.text


def test_a_failing_row_is_named_in_the_500(boom_dir: Path) -> None:
    with serve_in_process(boom_dir) as client:
        wait_ready(client)
        rows = [{"x": 1}, {"x": 2}, {"x": 13}, {"x": 4}]
        response = client.post("/v1/models/boom/predict", json={"inputs": rows})
        body = assert_error(response, 500, "inference_failed")
        assert body["details"]["row"] == 2
        assert body["message"].startswith("model 'boom' failed on row 2 of this request")
