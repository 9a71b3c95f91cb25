"""The data plane without HTTP: the one path both protocols take, step by step.

A real registry, a real engine and a real sklearn model; the protocol's side is a small
Exchange written here (the data plane's contract with a protocol is what these tests pin)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fastinfer.config import Settings
from fastinfer.context import RequestContext
from fastinfer.dataplane import Answer, DataPlane
from fastinfer.engine import Engine
from fastinfer.errors import InvalidInput, MalformedRequest, ModelNotFound, ModelNotReady
from fastinfer.model.spec import load_model_directory
from fastinfer.repository.registry import ModelRegistry
from fastinfer.repository.served import ServedModel
from fastinfer.runtimes import Row
from tests.conftest import build_tiny_model


class Rows:
    """A protocol that hands over rows it decoded itself and encodes the answer as a dict."""

    def __init__(self, rows: list[Any], *, validated: bool = False) -> None:
        self.rows, self.validated = rows, validated
        self.held_while_encoding: int | None = None

    async def decode(self, model: ServedModel) -> list[Row]:
        return self.rows

    def encode(self, answer: Answer) -> dict[str, Any]:
        self.held_while_encoding = answer.model.in_flight
        return {"version": answer.model.version, "predictions": answer.predictions}


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[ModelRegistry]:
    directories = [
        load_model_directory(build_tiny_model(tmp_path / "v1", version="1")),
        load_model_directory(build_tiny_model(tmp_path / "v2", version="2")),
    ]
    registry = ModelRegistry(directories, max_rows=16, trust_unpinned=False)
    for model in registry:
        registry.load(model)
    yield registry


def _run(registry: ModelRegistry, body: Any, *, serve: tuple[str, ...] = ("1", "2")) -> Any:
    """Run `body(plane)` on a loop where the versions in `serve` have engines."""

    async def main() -> Any:
        engine = Engine()
        for model in registry:
            if model.version in serve:
                assert model.runtime is not None and model.schema is not None
                model.engine = engine.attach(
                    model.label,
                    model.runtime,
                    model.schema.columns,
                    model.config.batching,
                    model_name=model.name,
                )
        try:
            return await body(DataPlane(registry, Settings(max_request_timeout_s=60)))
        finally:
            await engine.stop()
            for model in registry:
                model.engine = None

    return asyncio.run(main())


def _context() -> RequestContext:
    return RequestContext("req-1", time.perf_counter(), "POST", "/test")


def test_a_prediction_takes_every_step_and_releases_the_version(registry: ModelRegistry) -> None:
    exchange = Rows([{"x": 6.5, "colour": 1}, {"x": 0.5, "colour": 0}])
    context = _context()

    async def body(plane: DataPlane) -> Any:
        return await plane.infer("tiny", None, exchange, context)

    answer = _run(registry, body)
    assert answer["version"] == "2"  # the default: the newest
    assert [p["label"] for p in answer["predictions"]] == ["high", "low"]
    assert exchange.held_while_encoding == 1  # held until the protocol encoded the answer
    assert all(model.in_flight == 0 for model in registry)  # and released after
    assert (context.model, context.version) == ("tiny", "2")
    assert context.timing is not None and context.timing.batch_rows == 2


def test_raw_rows_are_validated_by_the_model_schema(registry: ModelRegistry) -> None:
    exchange = Rows([{"x": 6.5, "colour": 1}, {"x": "big", "colour": 7}])

    async def body(plane: DataPlane) -> Any:
        return await plane.infer("tiny", "1", exchange, _context())

    with pytest.raises(InvalidInput) as raised:
        _run(registry, body)
    problems = {(d["row"], d["field"]) for d in raised.value.details}
    assert problems == {(1, "x"), (1, "colour")}
    assert all(model.in_flight == 0 for model in registry)


def test_rows_the_protocol_validated_are_not_validated_again(registry: ModelRegistry) -> None:
    """v1's validator parses and validates the bytes in one pass; the plane trusts that."""
    exchange = Rows([{"x": 6.5, "colour": 1}], validated=True)

    async def body(plane: DataPlane) -> Any:
        return await plane.infer("tiny", "1", exchange, _context())

    assert _run(registry, body)["version"] == "1"


def test_unknown_models_and_versions_are_404s_naming_what_exists(
    registry: ModelRegistry,
) -> None:
    async def body(plane: DataPlane) -> list[ModelNotFound]:
        errors = []
        for name, version in (("nope", None), ("tiny", "9")):
            try:
                await plane.infer(name, version, Rows([]), _context())
            except ModelNotFound as exc:
                errors.append(exc)
        return errors

    missing_model, missing_version = _run(registry, body)
    assert missing_model.details == {"available": ["tiny"]}
    assert missing_version.details == {"available": ["1", "2"]}


def test_a_version_without_an_engine_is_not_ready(registry: ModelRegistry) -> None:
    async def body(plane: DataPlane) -> Any:
        return await plane.infer("tiny", "2", Rows([{"x": 1, "colour": 0}]), _context())

    with pytest.raises(ModelNotReady) as raised:
        _run(registry, body, serve=("1",))
    assert raised.value.headers["Retry-After"] == "5"


def test_the_deadline_header_is_checked_and_capped(registry: ModelRegistry) -> None:
    plane = DataPlane(registry, Settings(request_timeout_s=5, max_request_timeout_s=60))
    now = time.monotonic()
    assert 4 < plane.deadline(None) - now < 6
    assert 59 < plane.deadline("3600") - now < 61  # capped
    for bad in ("soon", "-1", "0", "nan", "inf"):
        with pytest.raises(MalformedRequest):
            plane.deadline(bad)


def test_observers_hear_of_every_answered_request(registry: ModelRegistry) -> None:
    heard: list[tuple[str, int]] = []
    plane = DataPlane(
        registry,
        Settings(),
        observers=[lambda context, status, elapsed: heard.append((context.request_id, status))],
    )
    plane.answered(_context(), 204, 0.001)
    assert heard == [("req-1", 204)]


def test_serving_holds_a_version_for_other_uses(registry: ModelRegistry) -> None:
    async def body(plane: DataPlane) -> tuple[int, int]:
        with plane.serving("tiny", "1") as model:
            inside = model.in_flight
        return inside, model.in_flight

    assert _run(registry, body) == (1, 0)
