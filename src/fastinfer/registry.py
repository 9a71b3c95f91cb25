"""Model names → loaded runtimes, with the lifecycle each model goes through.

Loading verifies the artefact's pin, deserialises it, builds the row schema and runs a
self-test prediction on the example row; only a model that passed all of that is ready.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from fastinfer.integrity import read_pinned, sha256_bytes
from fastinfer.modelspec import (
    ArtefactSpec,
    ModelConfig,
    ModelConfigError,
    ModelDirectory,
    load_model_directory,
)
from fastinfer.observability.logging import get_logger
from fastinfer.runtimes import Runtime, create_runtime
from fastinfer.schema import RowSchema

log = get_logger("fastinfer.registry")
_import_lock = threading.Lock()


class ModelState(StrEnum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


class SelfTestFailed(RuntimeError):  # noqa: N818
    """The example row did not give the prediction the config expects."""


@dataclass
class ServedModel:
    """One model as the service sees it: where it came from and how loading went."""

    directory: ModelDirectory
    state: ModelState = ModelState.LOADING
    reason: str | None = "loading"
    runtime: Runtime | None = None
    schema: RowSchema | None = None
    sha256: str | None = None
    loaded_at: datetime | None = None
    load_seconds: float | None = None
    self_test: str = "pending"
    self_test_seconds: float | None = None
    prepared: bool = False

    @property
    def config(self) -> ModelConfig:
        return self.directory.config

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def version(self) -> str:
        return self.config.version

    @property
    def ready(self) -> bool:
        return self.state is ModelState.READY


def bare_artefact(name: str, path: Path, sha256: str | None = None) -> ModelDirectory:
    """A model directory for a lone artefact given on the command line (`--model NAME=PATH`)."""
    path = path.resolve()
    if not path.is_file():
        raise ModelConfigError(f"{path}: no such file")
    config = ModelConfig(
        name=name,
        version="unversioned",
        runtime="sklearn",
        artefact=ArtefactSpec(path=path.name, sha256=sha256),
    )
    return ModelDirectory(root=path.parent, config=config)


def parse_model_option(option: str) -> ModelDirectory:
    """`NAME=PATH` or `NAME=PATH#sha256:HEX` → a bare-artefact model directory."""
    name, sep, rest = option.partition("=")
    if not sep or not name or not rest:
        raise ModelConfigError(f"--model {option!r}: expected NAME=PATH or NAME=PATH#sha256:HEX")
    path_text, _, pin = rest.partition("#sha256:")
    return bare_artefact(name, Path(path_text), pin or None)


class ModelRegistry:
    """The models this process serves, by name."""

    def __init__(
        self, directories: list[ModelDirectory], *, max_rows: int, trust_unpinned: bool
    ) -> None:
        seen: dict[str, Path] = {}
        for directory in directories:
            name = directory.config.name
            if name in seen:
                raise ModelConfigError(
                    f"model name {name!r} is used by both {seen[name]} and {directory.root}"
                )
            seen[name] = directory.root
        self._models = {d.config.name: ServedModel(directory=d) for d in directories}
        self._max_rows = max_rows
        self._trust_unpinned = trust_unpinned

    @classmethod
    def from_paths(cls, paths: list[Path], *, max_rows: int, trust_unpinned: bool) -> ModelRegistry:
        return cls(
            [load_model_directory(p) for p in paths],
            max_rows=max_rows,
            trust_unpinned=trust_unpinned,
        )

    def __iter__(self) -> Iterator[ServedModel]:
        return iter(self._models.values())

    def __len__(self) -> int:
        return len(self._models)

    def get(self, name: str) -> ServedModel | None:
        return self._models.get(name)

    def not_ready(self) -> dict[str, str]:
        """Model name → why it is not ready; empty when every model is ready."""
        return {m.name: m.reason or m.state.value for m in self if not m.ready}

    def load_all(self) -> None:
        for model in self:
            self.load(model)

    def prepare_all(self) -> None:
        """Read, verify and deserialise every model (before forking: one shared copy)."""
        for model in self:
            self._guarded(model, self._prepare)

    def load(self, model: ServedModel) -> None:
        """Prepare (if not yet) and activate one model; failures are recorded, never raised."""
        started = time.perf_counter()
        if not self._guarded(model, self._prepare) or not self._guarded(model, self._activate):
            return
        model.load_seconds = round(time.perf_counter() - started, 4)
        model.loaded_at = datetime.now(UTC)
        model.state, model.reason = ModelState.READY, None
        log.info(
            "model_ready",
            model=model.name,
            version=model.version,
            sha256=model.sha256,
            load_seconds=model.load_seconds,
            self_test=model.self_test,
        )

    def _guarded(self, model: ServedModel, step: Callable[[ServedModel], None]) -> bool:
        if model.state is ModelState.FAILED:
            return False
        try:
            step(model)
        except Exception as exc:
            model.state, model.reason = ModelState.FAILED, f"{type(exc).__name__}: {exc}"
            log.error(
                "model_load_failed", model=model.name, version=model.version, error=model.reason
            )
            return False
        return True

    def _prepare(self, model: ServedModel) -> None:
        """Everything that is safe to do before fork: no threads, no sessions."""
        if model.prepared:
            return
        directory, config = model.directory, model.config
        _add_code_paths(directory)
        runtime = create_runtime(
            config.runtime, config.output, config.runtime_options, directory=directory.root
        )
        data = b""
        if directory.artefact_path is not None and config.artefact is not None:
            data = read_pinned(
                directory.artefact_path,
                config.artefact.sha256,
                trust_unpinned=self._trust_unpinned,
                needs_trust=runtime.needs_trust,
            )
            model.sha256 = sha256_bytes(data)
        with _import_lock:  # unpickling imports modules; keep that single-threaded
            runtime.load(data)
        model.runtime = runtime
        model.prepared = True

    def _activate(self, model: ServedModel) -> None:
        """In the process that will predict: start the runtime, build the schema, self-test."""
        runtime, config = model.runtime, model.config
        assert runtime is not None
        runtime.start()
        inputs = config.inputs or runtime.derived_inputs()
        if not inputs:
            raise ModelConfigError(
                f"{model.directory.root}: the config declares no inputs and the artefact names none"
            )
        schema = RowSchema(
            config.name,
            inputs,
            allow_extra=config.allow_extra_fields,
            max_rows=self._max_rows,
            example=config.example,
        )
        runtime.bind_schema(inputs)
        started = time.perf_counter()
        model.self_test = _self_test(runtime, schema, config)
        model.self_test_seconds = time.perf_counter() - started
        model.schema = schema


def _self_test(runtime: Runtime, schema: RowSchema, config: ModelConfig) -> str:
    """Predict the example row, so 'ready' means 'answers', not just 'deserialised'."""
    if config.example is None:
        return "skipped: the config has no example row"
    rows = schema.validate_rows([config.example])
    (prediction,) = runtime.predict(rows, schema.columns)
    expected = config.expected_example_output
    if expected is not None:
        got = prediction.get("label", prediction.get("value"))
        if got != expected:
            raise SelfTestFailed(
                f"the example row predicted {got!r}, the config expects {expected!r}"
            )
    return "passed"


def _add_code_paths(directory: ModelDirectory) -> None:
    """Make the model's own modules importable, confined to its directory."""
    root = directory.root.resolve()
    for path in directory.code_paths:
        resolved = path.resolve()
        if not resolved.is_relative_to(root):
            raise ModelConfigError(f"{path}: code path escapes the model directory {root}")
        if not resolved.exists():
            raise ModelConfigError(f"{path}: code path does not exist")
        entry = str(resolved.parent)
        if entry not in sys.path:
            sys.path.insert(0, entry)
