"""Hard limits on every input, gzip with a cap, no leaks in errors, confined model files."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import logging
import re
import tracemalloc
from pathlib import Path
from typing import Any

import joblib
import orjson
import pandas as pd
import pytest
import yaml
from fastapi.testclient import TestClient

from fastinfer.api.http import read_body
from fastinfer.errors import MalformedRequest, PayloadTooLarge, RequestTimeout
from fastinfer.model.schema import InputLimits, InvalidRowsError, MalformedBodyError, RowSchema
from fastinfer.model.spec import InputField
from tests.conftest import (
    TITANIC,
    build_scripted_model,
    build_tiny_model,
    serve_in_process,
    sha256_of,
    wait_ready,
    write_config,
)

ROW = {"inputs": [{"x": 7, "colour": 0}]}
V2_ROW = {
    "inputs": [
        {"name": "x", "datatype": "FP64", "shape": [1], "data": [7.0]},
        {"name": "colour", "datatype": "INT64", "shape": [1], "data": [0]},
    ]
}
JSON = {"Content-Type": "application/json"}
GZIP = {**JSON, "Content-Encoding": "gzip"}


# -- gzip ---------------------------------------------------------------------------------------


def test_gzip_bodies_are_accepted_on_v1_and_v2(tiny_client: TestClient) -> None:
    v1 = tiny_client.post(
        "/v1/models/tiny/predict", content=gzip.compress(orjson.dumps(ROW)), headers=GZIP
    )
    assert v1.status_code == 200, v1.text
    assert v1.json()["predictions"][0]["label"] == "high"
    v2 = tiny_client.post(
        "/v2/models/tiny/infer", content=gzip.compress(orjson.dumps(V2_ROW)), headers=GZIP
    )
    assert v2.status_code == 200, v2.text


def test_a_zip_bomb_is_refused_413(tiny_client: TestClient) -> None:
    bomb = gzip.compress(b" " * (10 * 1024 * 1024), 9)  # valid JSON whitespace, 10 MB inflated
    assert len(bomb) < 64 * 1024
    for path in ("/v1/models/tiny/predict", "/v2/models/tiny/infer"):
        response = tiny_client.post(path, content=bomb, headers=GZIP)
        assert response.status_code == 413, response.text
    assert tiny_client.post("/v1/models/tiny/predict", content=bomb, headers=GZIP).json()[
        "details"
    ] == {"max_body_bytes": 4 * 1024 * 1024}


def test_a_zip_bomb_never_inflates_past_the_limit() -> None:
    bomb = gzip.compress(b"\0" * (10 * 1024 * 1024), 9)
    scope = {"headers": [(b"content-encoding", b"gzip")]}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": bomb, "more_body": False}

    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooLarge):
            asyncio.run(read_body(scope, receive, 64 * 1024))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * 1024 * 1024  # the 10 MB were never allocated


def test_unknown_encodings_are_415_and_broken_gzip_400(tiny_client: TestClient) -> None:
    body = orjson.dumps(ROW)
    br = tiny_client.post(
        "/v1/models/tiny/predict", content=body, headers={**JSON, "Content-Encoding": "br"}
    )
    assert br.status_code == 415
    assert br.json()["details"]["content_encoding"] == "br"
    v2 = tiny_client.post(
        "/v2/models/tiny/infer", content=body, headers={**JSON, "Content-Encoding": "zstd"}
    )
    assert v2.status_code == 415
    broken = tiny_client.post("/v1/models/tiny/predict", content=body, headers=GZIP)
    assert broken.status_code == 400
    truncated = gzip.compress(body)[:-6]
    assert (
        tiny_client.post("/v1/models/tiny/predict", content=truncated, headers=GZIP).status_code
        == 400
    )


# -- slow bodies ----------------------------------------------------------------------------------


def test_a_body_that_does_not_arrive_in_time_is_408_and_closes() -> None:
    async def trickle() -> dict[str, Any]:
        await asyncio.sleep(0.05)
        return {"type": "http.request", "body": b"{", "more_body": True}

    with pytest.raises(RequestTimeout) as caught:
        asyncio.run(read_body({"headers": []}, trickle, 1024, timeout=0.2))
    assert caught.value.status == 408
    assert caught.value.headers == {"Connection": "close"}
    assert caught.value.details == {"body_read_timeout_s": 0.2}


def test_a_disconnect_mid_body_is_400() -> None:
    async def gone() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    with pytest.raises(MalformedRequest):
        asyncio.run(read_body({"headers": []}, gone, 1024))


# -- strings, NaN, depth, fields ------------------------------------------------------------------


def _schema(*fields: InputField, allow_extra: bool = False, **limits: Any) -> RowSchema:
    return RowSchema(
        "limits",
        list(fields),
        allow_extra=allow_extra,
        max_rows=8,
        example=None,
        limits=InputLimits(**limits),
    )


def _problems(schema: RowSchema, body: bytes) -> list[dict[str, Any]]:
    with pytest.raises(InvalidRowsError) as caught:
        schema.parse_request(body)
    return [p.as_dict() for p in caught.value.problems]


def test_every_string_is_capped_and_a_smaller_field_cap_wins() -> None:
    schema = _schema(
        InputField(name="free", type="string"),
        InputField(name="short", type="string", max_length=3),
        InputField(name="anything", type="any"),
        max_string_length=8,
    )
    ok = b'{"inputs": [{"free": "12345678", "short": "abc", "anything": "12345678"}]}'
    assert schema.parse_request(ok)[0]["free"] == "12345678"
    too_long = b'{"inputs": [{"free": "123456789", "short": "abcd", "anything": "123456789"}]}'
    problems = {p["field"]: p for p in _problems(schema, too_long)}
    assert problems["free"]["type"] == "string_too_long"
    assert "at most 8 characters" in problems["free"]["problem"]
    assert "at most 3 characters" in problems["short"]["problem"]
    assert any(field.startswith("anything") for field in problems)  # per union member


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_literals_are_refused(literal: bytes) -> None:
    schema = _schema(InputField(name="x", type="number"), InputField(name="a", type="any"))
    body = b'{"inputs": [{"x": %s, "a": %s}]}' % (literal, literal)
    problems = {p["field"]: p["problem"] for p in _problems(schema, body)}
    assert problems["x"] == "must be a finite number"
    assert any(field.startswith("a[") for field in problems)  # an `any` field takes no NaN
    # a nullable number says "missing" with null, not NaN
    nullable = _schema(InputField(name="x", type="number", nullable=True))
    assert nullable.parse_request(b'{"inputs": [{"x": null}]}') == [{"x": None}]
    assert _problems(nullable, b'{"inputs": [{"x": %s}]}' % literal)


def test_nan_over_http_is_422(tiny_client: TestClient) -> None:
    response = tiny_client.post(
        "/v1/models/tiny/predict", content=b'{"inputs": [{"x": NaN, "colour": 0}]}', headers=JSON
    )
    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "x"


def test_open_rows_cap_fields_and_depth() -> None:
    schema = _schema(
        InputField(name="x", type="number"), allow_extra=True, max_fields=4, max_depth=6
    )
    assert schema.parse_request(b'{"inputs": [{"x": 1, "a": [[1]], "b": 2}]}') == [{"x": 1.0}]
    wide = orjson.dumps({"inputs": [{"x": 1, **{f"f{i}": i for i in range(10)}}]})
    (problem,) = _problems(schema, wide)
    assert problem["type"] == "too_many_fields"
    assert problem["row"] == 0
    assert "at most 4" in problem["problem"]
    deep = orjson.dumps({"inputs": [{"x": 1, "a": [[[[1]]]]}]})
    (problem,) = _problems(schema, deep)
    assert problem["type"] == "too_deep"


def test_closed_rows_refuse_nesting_and_the_parser_caps_the_rest() -> None:
    schema = _schema(InputField(name="x", type="number"))
    (problem,) = _problems(schema, b'{"inputs": [{"x": [[[1]]]}]}')
    assert problem["field"] == "x"
    with pytest.raises(MalformedBodyError, match="nests too deep"):
        schema.parse_request(b'{"inputs": [{"x": ' + b"[" * 500 + b"]" * 500 + b"}]}")


def test_v2_parameters_cannot_nest_deep(tiny_client: TestClient) -> None:
    request = {**V2_ROW, "parameters": {"p": orjson.loads(b"[" * 20 + b"]" * 20)}}
    response = tiny_client.post("/v2/models/tiny/infer", json=request)
    assert response.status_code == 400
    assert "nest deeper" in response.json()["error"]


@pytest.fixture(scope="module")
def titanic_client(examples_built: None) -> Any:
    with serve_in_process(TITANIC, max_string_length=60) as client:
        wait_ready(client)
        yield client


def test_the_global_string_cap_holds_over_model_yaml(titanic_client: TestClient) -> None:
    example = yaml.safe_load((TITANIC / "model.yaml").read_text())["example"]
    row = {**example, "Name": "N" * 61}
    response = titanic_client.post("/v1/models/titanic/predict", json={"inputs": [row]})
    assert response.status_code == 422
    (problem,) = response.json()["details"]
    assert problem["field"] == "Name"
    assert "at most 60 characters" in problem["problem"]


def test_rows_and_body_size_are_413(tmp_path: Path) -> None:
    with serve_in_process(build_tiny_model(tmp_path / "t"), max_rows=2, max_body_bytes=2048) as c:
        wait_ready(c)
        rows = c.post("/v1/models/tiny/predict", json={"inputs": ROW["inputs"] * 3})
        assert rows.status_code == 413
        assert rows.json()["details"] == {"rows": 3, "max_rows": 2}
        big = c.post("/v1/models/tiny/predict", content=b" " * 4096, headers=JSON)
        assert big.status_code == 413
        assert big.json()["details"] == {"max_body_bytes": 2048}


# -- no leaks -----------------------------------------------------------------------------------


LEAKS = re.compile(
    r"Traceback|File \"|\.py|/tmp|/work|ValueError|RuntimeError|scripted failure|fastinfer \d"
)


def _logged(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> str:
    """What was logged, wherever the logging setup sent it (records or the console)."""
    out, err = capfd.readouterr()
    return " ".join(str(record.msg) for record in caplog.records) + out + err


def test_a_model_failure_answers_an_error_id_and_no_internals(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    with serve_in_process(build_scripted_model(tmp_path / "scripted")) as client:
        wait_ready(client)
        with caplog.at_level(logging.INFO):
            v1 = client.post("/v1/models/scripted/predict", json={"inputs": [{"x": 13}]})
            v2 = client.post(
                "/v2/models/scripted/infer",
                json={"inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": [13]}]},
            )
    assert v1.status_code == 500
    assert v2.status_code == 500
    assert not LEAKS.search(v1.text), v1.text
    assert not LEAKS.search(v2.text), v2.text
    error_id = v1.json()["details"]["error_id"]
    assert re.fullmatch(r"[0-9a-f]{12}", error_id)
    v2_id = re.search(r"error id ([0-9a-f]{12})", v2.json()["error"])
    logged = _logged(caplog, capfd)
    assert error_id in logged
    assert v2_id is not None and v2_id.group(1) in logged


def test_an_unhandled_exception_answers_an_error_id(
    tiny_client: TestClient,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plane = tiny_client.app.state.dataplane  # type: ignore[attr-defined]

    def explode(*_args: Any) -> Any:
        raise RuntimeError("secret at /etc/fastinfer/keys.py line 3")

    monkeypatch.setattr(plane, "_decode", explode)
    with caplog.at_level(logging.ERROR):
        v1 = tiny_client.post("/v1/models/tiny/predict", json=ROW)
        v2 = tiny_client.post("/v2/models/tiny/infer", json=V2_ROW)
    assert (v1.status_code, v2.status_code) == (500, 500)
    for response in (v1, v2):
        assert "secret" not in response.text
        assert not LEAKS.search(response.text), response.text
    assert v1.json()["code"] == "internal_error"
    logged = _logged(caplog, capfd)
    assert v1.json()["details"]["error_id"] in logged
    v2_id = re.search(r"error id ([0-9a-f]{12})", v2.json()["error"])
    assert v2_id is not None and v2_id.group(1) in logged
    assert "secret at" in logged  # the traceback goes to the log


def test_unknown_paths_and_methods_answer_in_the_error_shape(tiny_client: TestClient) -> None:
    missing = tiny_client.get("/nope")
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"
    wrong = tiny_client.delete("/v1/models/tiny/predict")
    assert wrong.status_code == 405
    assert wrong.json()["code"] == "method_not_allowed"
    for response in (missing, wrong, tiny_client.post("/v1/models/tiny/predict", json=ROW)):
        assert "server" not in response.headers
        assert "x-powered-by" not in response.headers
        assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_carry_security_headers(tiny_client: TestClient, page: str) -> None:
    response = tiny_client.get(page)
    assert response.status_code == 200
    headers = response.headers
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-content-type-options"] == "nosniff"
    csp = headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp
    script_src = next(d for d in csp.split(";") if d.strip().startswith("script-src"))
    assert "unsafe-inline" not in script_src
    for script in re.findall(rb"<script>(.*?)</script>", response.content, re.DOTALL):
        digest = base64.b64encode(hashlib.sha256(script).digest()).decode()
        assert f"'sha256-{digest}'" in script_src


# -- model files --------------------------------------------------------------------------------


TOKEN = "limits-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _repository(root: Path) -> Path:
    for version in ("1", "2"):
        directory = build_tiny_model(root / "tiny" / version, version=version)
        config = yaml.safe_load((directory / "model.yaml").read_text())
        del config["name"], config["version"]
        (directory / "model.yaml").write_text(yaml.safe_dump(config))
    return root


@pytest.fixture
def repo_client(tmp_path: Path) -> Any:
    repository = _repository(tmp_path / "models")
    outside = build_tiny_model(tmp_path / "outside" / "9", name="outside", version="9")
    (repository / "tiny" / "7").symlink_to(outside, target_is_directory=True)
    (repository / "escape").symlink_to(tmp_path / "outside", target_is_directory=True)
    with serve_in_process(model_repository=repository, admin_token=TOKEN) as client:
        wait_ready(client)
        client.repository = repository  # type: ignore[attr-defined]
        yield client


def _loaded(client: TestClient) -> dict[str, list[str]]:
    state = client.get("/admin/models", headers=AUTH).json()
    return {
        m["name"]: [v["version"] for v in m["versions"] if v["loaded"]] for m in state["models"]
    }


@pytest.mark.parametrize(
    ("name", "version"), [("..", "outside"), ("tiny", ".."), (".hidden", "1"), ("tiny", ".x")]
)
def test_admin_names_cannot_leave_the_repository(
    repo_client: TestClient, name: str, version: str
) -> None:
    from fastinfer.repository.manager import ModelManager

    manager: ModelManager = repo_client.app.state.manager  # type: ignore[attr-defined]
    before = _loaded(repo_client)
    from fastinfer.repository.changes import ChangeRefused

    with pytest.raises(ChangeRefused) as caught:
        asyncio.run(manager.load(name, version))
    assert caught.value.status == 400
    assert _loaded(repo_client) == before


def test_admin_url_escape_attempts_are_4xx(repo_client: TestClient) -> None:
    before = _loaded(repo_client)
    for path in (
        "/admin/models/%2E%2E/versions/outside/load",
        "/admin/models/tiny/versions/%2E%2E/load",
        "/admin/models/..%2Foutside/versions/9/load",
    ):
        response = repo_client.post(path, headers=AUTH)
        assert 400 <= response.status_code < 500, (path, response.text)
    assert _loaded(repo_client) == before
    assert "outside" not in _loaded(repo_client)


def test_symlinks_out_of_the_repository_are_not_versions(repo_client: TestClient) -> None:
    assert sorted(_loaded(repo_client)) == ["tiny"]
    assert "7" not in _loaded(repo_client)["tiny"]
    linked = repo_client.post("/admin/models/tiny/versions/7/load", headers=AUTH)
    assert linked.status_code == 404
    escaped = repo_client.post("/admin/models/escape/versions/9/load", headers=AUTH)
    assert escaped.status_code == 404
    assert sorted(_loaded(repo_client)) == ["tiny"]


def test_a_reload_checks_the_sha256_pin_again(repo_client: TestClient) -> None:
    repository: Path = repo_client.repository  # type: ignore[attr-defined]
    artefact = repository / "tiny" / "2" / "model.joblib"
    artefact.write_bytes(artefact.read_bytes() + b"\0")  # the file changed; its pin did not
    refused = repo_client.post("/admin/models/tiny/versions/2/reload", headers=AUTH)
    assert refused.status_code == 422
    assert "sha256 mismatch" in refused.text
    served = repo_client.post("/v1/models/tiny/versions/2/predict", json=ROW)
    assert served.status_code == 200  # the verified version still serves
    synced = repo_client.post("/admin/repository/sync", headers=AUTH)  # what polling runs
    assert synced.status_code in (200, 422)
    assert repo_client.post("/v1/models/tiny/versions/2/predict", json=ROW).status_code == 200


def _word_model(directory: Path, version: str) -> Path:
    """A model with a free-text input (`word`), in `directory` as version `version`."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    directory.mkdir(parents=True)
    frame = pd.DataFrame({"word": ["a", "b", "a", "b"], "x": [0.0, 1, 2, 3]})
    encode = ColumnTransformer(
        [("word", OneHotEncoder(handle_unknown="ignore"), ["word"])], remainder="passthrough"
    )
    model = Pipeline([("encode", encode), ("model", LogisticRegression())])
    joblib.dump(model.fit(frame, ["no", "yes", "no", "yes"]), directory / "model.joblib")
    return write_config(
        directory,
        {
            "name": "words",
            "version": version,
            "runtime": "sklearn",
            "artefact": {"path": "model.joblib", "sha256": sha256_of(directory / "model.joblib")},
            "inputs": [{"name": "word", "type": "string"}, {"name": "x", "type": "number"}],
            "example": {"word": "a", "x": 1.0},
            "output": {"kind": "classifier"},
        },
    )


def _published_word_schema(document: dict[str, Any], path: str) -> dict[str, Any]:
    """The JSON schema the OpenAPI document gives the `word` field of `path`'s request rows."""
    schemas = document["components"]["schemas"]
    body = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]
    request = schemas[body["schema"]["$ref"].rsplit("/", 1)[-1]]
    row = schemas[request["properties"]["inputs"]["items"]["$ref"].rsplit("/", 1)[-1]]
    word: dict[str, Any] = row["properties"]["word"]
    return word


def test_every_version_publishes_the_string_cap_it_enforces(tmp_path: Path) -> None:
    """The default version's schema and an older version's (documented under their own names)
    both carry the configured cap, and the older version enforces it too."""
    old, new = _word_model(tmp_path / "1", "1"), _word_model(tmp_path / "2", "2")
    with serve_in_process(old, new, max_string_length=8) as client:
        wait_ready(client)
        document = client.get("/openapi.json").json()
        default = _published_word_schema(document, "/v1/models/words/predict")
        older = _published_word_schema(document, "/v1/models/words/versions/1/predict")
        assert default["maxLength"] == older["maxLength"] == 8
        long_word = {"inputs": [{"word": "w" * 9, "x": 1.0}]}
        response = client.post("/v1/models/words/versions/1/predict", json=long_word)
        assert response.status_code == 422
        assert "at most 8 characters" in response.json()["details"][0]["problem"]
