"""How one version becomes ready, step by step.

`prepare` reads and verifies the artefact and deserialises it: safe before the fork, so the
workers share the model. `build` makes the row schema, the runtime's faster path and runs the
self-test: before the fork too where the runtime allows it (`build_before_fork`), else in each
serving process. `activate` starts the runtime (threads, sessions) in the process that predicts,
and builds it there if it was not built yet.
"""

from __future__ import annotations

import sys
import threading
import time

from fastinfer.model.hooks import load_hooks
from fastinfer.model.integrity import read_pinned, sha256_bytes
from fastinfer.model.schema import InputLimits, RowSchema
from fastinfer.model.spec import ModelConfig, ModelConfigError, ModelDirectory, OutputSpec
from fastinfer.observability.logging import get_logger
from fastinfer.repository.served import ServedModel
from fastinfer.runtimes import Runtime, create_runtime
from fastinfer.runtimes.detect import HEAD_BYTES, UNPINNED_RISKS, detect_runtime, open_as
from fastinfer.runtimes.forksafe import single_native_thread, thread_count

log = get_logger("fastinfer.registry")
_import_lock = threading.Lock()


class SelfTestFailed(RuntimeError):  # noqa: N818
    """The example row did not give the prediction the config expects."""


class VersionLoader:
    """The steps of loading one version, with the limits every version's schema gets."""

    def __init__(self, *, max_rows: int, limits: InputLimits, trust_unpinned: bool) -> None:
        self._max_rows = max_rows
        self._limits = limits
        self._trust_unpinned = trust_unpinned

    def build_before_fork(self, model: ServedModel) -> None:
        """`build`, in a process about to fork, for a runtime that allows it; native thread
        pools stay single-threaded meanwhile (`single_native_thread`): a child forked after an
        OpenMP pool started would hang in its first prediction."""
        assert model.runtime is not None
        if not model.runtime.builds_before_fork:
            return
        threads = thread_count()
        try:
            with single_native_thread():
                self.build(model)
        finally:
            started = thread_count() - threads
            if started > 0:  # model code started a thread of its own
                log.warning(
                    "threads_started_before_fork",
                    model=model.name,
                    version=model.version,
                    threads=started,
                )

    def prepare(self, model: ServedModel) -> None:
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
                risk=UNPINNED_RISKS.get(config.runtime, UNPINNED_RISKS["sklearn"]),
            )
            model.sha256 = sha256_bytes(data)
        with _import_lock:  # unpickling imports modules; keep that single-threaded
            if directory.bare:
                runtime = self._open_bare(model, data)
            else:
                runtime.load(data)
            spec = config.hooks
            model.hooks = load_hooks(spec.pre, spec.post, spec.timeout_ms)
        model.runtime = runtime
        model.prepared = True

    @staticmethod
    def _open_bare(model: ServedModel, data: bytes) -> Runtime:
        """A bare artefact's verified bytes, loaded as the kind of model they hold.

        The content is checked again, on the bytes that load: the file may have changed since
        `--model` was parsed, and a file that is not what its runtime reads is never loaded.
        """
        directory, config = model.directory, model.config
        assert directory.artefact_path is not None
        detect_runtime(directory.artefact_path, data[:HEAD_BYTES], config.runtime)
        kind, runtime = open_as(
            config.runtime,
            data,
            options=config.runtime_options,
            directory=directory.root,
            start=False,  # started in the serving process, after the fork
        )
        output = OutputSpec(kind=kind)
        model.directory = directory.model_copy(
            update={"config": config.model_copy(update={"output": output})}
        )
        return runtime

    def activate(self, model: ServedModel) -> None:
        """In the process that will predict: start the runtime, then build what is not yet."""
        assert model.runtime is not None
        model.runtime.start()
        if not model.built:
            self.build(model)

    def build(self, model: ServedModel) -> None:
        """The row schema, the runtime's faster path, and the self-test on the example row."""
        building = time.perf_counter()
        runtime, config = model.runtime, model.config
        assert runtime is not None
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
            limits=self._limits,
            dtypes=runtime.input_dtypes(inputs),
        )
        runtime.bind_schema(inputs)
        examples = schema.validate_rows([config.example]) if config.example is not None else []
        runtime.prepare(examples, schema.columns)
        started = time.perf_counter()
        model.self_test = _self_test(runtime, schema, config)
        model.self_test_seconds = time.perf_counter() - started
        model.schema = schema
        model.built = True
        model.build_seconds = time.perf_counter() - building


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
