"""ModelRegistry without HTTP: each version's lifecycle (loading → ready or failed, with the
reason), the self-test, installing a new desired state, and which version answers by default."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from fastinfer.engine.batcher import ModelEngine
from fastinfer.model.spec import ModelConfigError, ModelDirectory, load_model_directory
from fastinfer.repository.registry import ModelRegistry
from fastinfer.repository.served import ModelState, ServedModel
from fastinfer.repository.state import DesiredState, ModelEntry, VersionSource
from fastinfer.runtimes.sklearn import SklearnRuntime
from tests.conftest import build_tiny_model, sha256_of


def edit_config(directory: Path, **changes: Any) -> Path:
    """Change model.yaml's top-level keys (None removes one)."""
    path = directory / "model.yaml"
    config = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return directory


def tiny(tmp_path: Path, version: str = "1", **changes: Any) -> ModelDirectory:
    directory = build_tiny_model(tmp_path / "tiny" / version, version=version)
    return load_model_directory(edit_config(directory, **changes))


def registry(*directories: ModelDirectory, trust_unpinned: bool = False) -> ModelRegistry:
    return ModelRegistry(list(directories), max_rows=16, trust_unpinned=trust_unpinned)


def serving(model: ServedModel) -> ServedModel:
    """Mark a loaded model as having an engine: what makes it routable (`serving`)."""
    model.engine = cast(Any, object())
    return model


def test_a_good_version_loads_to_ready_after_its_self_test(tmp_path: Path) -> None:
    directory = tiny(tmp_path)
    models = registry(directory)
    (model,) = models
    assert (model.state, model.reason, model.self_test) == (
        ModelState.LOADING,
        "loading",
        "pending",
    )
    models.load(model)
    assert (model.state, model.reason, model.self_test) == (ModelState.READY, None, "passed")
    assert model.sha256 == sha256_of(directory.root / "model.joblib")
    assert model.schema is not None and model.schema.columns == ["x", "colour"]
    assert model.self_test_seconds is not None and model.load_seconds is not None
    assert model.loaded_at is not None
    assert models.failures == {}
    # ready is not yet routable: the engine has not been attached
    assert not model.serving
    assert models.not_ready() == {"tiny": "starting"}
    assert models.resolve("tiny") is model  # the newest, even before it serves
    assert models.get("tiny") is not None and models.get("tiny").default() is None  # type: ignore[union-attr]


def test_a_loaded_version_answers_through_a_model_engine(tmp_path: Path) -> None:
    """The registry's product plugged into the engine: rows validated by its schema, predicted
    by its runtime on a worker thread. The self-test's time (a cold first call) is not taken as
    the service time: the engine starts with nothing learned."""
    models = registry(tiny(tmp_path))
    (model,) = models
    models.load(model)
    assert model.runtime is not None and model.schema is not None

    async def scenario() -> list[dict[str, Any]]:
        assert model.runtime is not None and model.schema is not None
        engine = ModelEngine(
            model.label,
            model.runtime,
            model.schema.columns,
            model.config.batching,
            workers=1,
            model_name=model.name,
        )
        model.engine = engine
        try:
            assert engine.service.samples == 0
            assert models.not_ready() == {}
            assert models.resolve("tiny") is model
            rows = model.schema.validate_rows([{"x": 6.5, "colour": 1}, {"x": 0.5, "colour": 0}])
            predictions, _ = await engine.infer(rows, time.monotonic() + 30, "r1")
            return predictions
        finally:
            model.engine = None
            await engine.stop()

    predictions = asyncio.run(scenario())
    assert [p["label"] for p in predictions] == ["high", "low"]


def test_a_wrong_pin_fails_the_version_with_the_reason(tmp_path: Path) -> None:
    directory = tiny(tmp_path, artefact={"path": "model.joblib", "sha256": "0" * 64})
    models = registry(directory)
    (model,) = models
    models.load(model)
    assert model.state is ModelState.FAILED
    assert model.reason is not None and model.reason.startswith("IntegrityError: ")
    assert "sha256 mismatch" in model.reason
    assert model.runtime is None  # never deserialised
    assert models.failures == {("tiny", "1"): model.reason}
    assert models.not_ready() == {"tiny": f"failed: {model.reason}"}
    models.load(model)  # failed is final for this object: a retry is a new candidate
    assert model.state is ModelState.FAILED and model.runtime is None


def test_an_unpinned_pickle_loads_only_when_trusted(tmp_path: Path) -> None:
    directory = tiny(tmp_path, artefact={"path": "model.joblib"})
    strict = registry(directory)
    (model,) = strict
    strict.load(model)
    assert model.state is ModelState.FAILED
    assert model.reason is not None and model.reason.startswith("UnpinnedArtefactError: ")
    trusting = registry(directory, trust_unpinned=True)
    (model,) = trusting
    trusting.load(model)
    assert model.state is ModelState.READY


def test_a_self_test_that_predicts_the_wrong_thing_fails_the_version(tmp_path: Path) -> None:
    """'Ready' means 'answers as expected', not just 'deserialised'."""
    models = registry(tiny(tmp_path, expected_example_output="low"))
    (model,) = models
    models.load(model)
    assert model.state is ModelState.FAILED
    assert model.reason == (
        "SelfTestFailed: the example row predicted 'high', the config expects 'low'"
    )
    assert model.schema is None  # only a self-tested model gets its schema


def test_an_invalid_example_row_fails_the_version(tmp_path: Path) -> None:
    models = registry(tiny(tmp_path, example={"x": 1000, "colour": 1}))  # over the maximum
    (model,) = models
    models.load(model)
    assert model.state is ModelState.FAILED
    assert model.reason is not None and model.reason.startswith("InvalidRowsError: ")
    assert "field 'x'" in model.reason


def test_without_an_example_the_self_test_is_skipped(tmp_path: Path) -> None:
    models = registry(tiny(tmp_path, example=None, expected_example_output=None))
    (model,) = models
    models.load(model)
    assert model.state is ModelState.READY
    assert model.self_test.startswith("skipped")


def test_prepare_builds_before_fork_what_may_cross_it(tmp_path: Path) -> None:
    """prepare_all runs before the server forks: a runtime with nothing that must not cross a
    fork (scikit-learn) is built there once (schema, faster path, self-test) and its workers
    share it; `load` in each serving process starts it without building it again."""
    models = registry(tiny(tmp_path))
    models.prepare_all()
    (model,) = models
    assert model.prepared and model.built and model.runtime is not None
    assert model.self_test == "passed" and model.schema is not None
    assert model.state is ModelState.LOADING  # ready only once a serving process loaded it
    runtime, schema, seconds = model.runtime, model.schema, model.self_test_seconds
    models.load(model)
    assert model.state is ModelState.READY
    assert model.runtime is runtime and model.schema is schema  # not deserialised twice
    assert model.self_test_seconds == seconds  # nor self-tested twice
    assert model.load_seconds is not None and model.load_seconds + 1e-4 >= model.build_seconds > 0


def test_prepare_leaves_runtimes_that_start_threads_to_the_serving_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(SklearnRuntime, "builds_before_fork", False)  # as ONNX, XGBoost...
    models = registry(tiny(tmp_path))
    models.prepare_all()
    (model,) = models
    assert model.prepared and not model.built
    assert (model.state, model.self_test, model.schema) == (ModelState.LOADING, "pending", None)
    models.load(model)
    assert model.state is ModelState.READY and model.self_test == "passed"


def test_a_failed_build_before_fork_is_told_by_the_serving_process(tmp_path: Path) -> None:
    models = registry(tiny(tmp_path, expected_example_output="low"))
    models.prepare_all()
    (model,) = models
    assert model.prepared and model.state is ModelState.FAILED
    models.load(model)
    assert model.state is ModelState.FAILED
    assert "the example row predicted 'high'" in (model.reason or "")
    assert "the example row predicted" in models.failures[("tiny", "1")]


def test_the_same_version_twice_or_a_pin_to_nothing_is_a_config_error(tmp_path: Path) -> None:
    one = tiny(tmp_path)
    copy = build_tiny_model(tmp_path / "copy")
    with pytest.raises(ModelConfigError, match="given by both"):
        registry(one, load_model_directory(copy))
    with pytest.raises(ModelConfigError, match="no such model version"):
        ModelRegistry([one], max_rows=16, trust_unpinned=False, pins={"tiny": "7"})
    pinned = ModelRegistry([one], max_rows=16, trust_unpinned=False, pins={"tiny": "1"})
    assert pinned.snapshot().models["tiny"].pinned == "1"


def test_the_snapshot_describes_what_the_registry_holds(tmp_path: Path) -> None:
    one, two = tiny(tmp_path, "1"), tiny(tmp_path, "2")
    snapshot = registry(one, two).snapshot(generation=4)
    assert snapshot == DesiredState(
        generation=4,
        models={
            "tiny": ModelEntry(
                versions={
                    "1": VersionSource(path=str(one.root)),
                    "2": VersionSource(path=str(two.root)),
                }
            )
        },
    )


def loaded(models: ModelRegistry, directory: ModelDirectory, revision: int = 0) -> ServedModel:
    source = VersionSource(path=str(directory.root), revision=revision)
    model = models.candidate(directory.config.name, directory.config.version, source)
    models.load(model)
    return serving(model) if model.ready else model


def test_install_adds_replaces_and_retires_versions(tmp_path: Path) -> None:
    one, two = tiny(tmp_path, "1"), tiny(tmp_path, "2")
    models = registry(one)
    models.load_all()
    v1 = serving(models.resolve("tiny", "1"))  # type: ignore[arg-type]
    changes = models.changes

    # a new version: installed next to the old one, which keeps its object
    v2 = loaded(models, two)
    both = DesiredState(
        generation=2,
        models={"tiny": ModelEntry(versions={"1": v1.source, "2": v2.source})},
    )
    assert models.install(both, [v2]) == []
    assert [m.version for m in models] == ["1", "2"]
    assert models.resolve("tiny", "1") is v1
    assert models.resolve("tiny") is v2  # the newest serving version answers by default
    assert models.changes == changes + 1

    # a reload of version 2 (revision 1) replaces it; the old object is retired
    v2b = loaded(models, two, revision=1)
    reloaded = DesiredState(
        generation=3,
        models={"tiny": ModelEntry(versions={"1": v1.source, "2": v2b.source}, pinned="1")},
    )
    assert models.install(reloaded, [v2b]) == [v2]
    assert models.resolve("tiny", "2") is v2b
    assert v2b.label == "tiny/2#1"
    assert models.resolve("tiny") is v1  # pinned

    # dropping a version retires it; dropping the model retires the rest
    only_two = DesiredState(generation=4, models={"tiny": ModelEntry(versions={"2": v2b.source})})
    assert models.install(only_two, []) == [v1]
    assert models.install(DesiredState(generation=5), []) == [v2b]
    assert len(models) == 0 and models.names() == []


def test_a_failed_reload_replaces_nothing_that_works(tmp_path: Path) -> None:
    """A fresh version that failed to load must not take a working one's place: the old one
    keeps serving (the failure is reported by the change, not by an outage)."""
    directory = tiny(tmp_path)
    models = registry(directory)
    models.load_all()
    old = serving(models.resolve("tiny", "1"))  # type: ignore[arg-type]
    (directory.root / "model.joblib").write_bytes(b"not the pinned bytes")
    fresh = loaded(models, directory, revision=1)
    assert fresh.state is ModelState.FAILED
    assert models.failures == {("tiny", "1"): fresh.reason}
    state = DesiredState(generation=2, models={"tiny": ModelEntry(versions={"1": fresh.source})})
    assert models.install(state, [fresh]) == []
    assert models.resolve("tiny", "1") is old
    assert models.not_ready() == {}


def test_a_failed_version_with_nothing_before_it_is_installed_as_failed(tmp_path: Path) -> None:
    """Then readiness can say why the model has nothing to answer with."""
    good, bad = tiny(tmp_path, "1"), tiny(tmp_path, "2", expected_example_output="low")
    models = registry(good)
    fresh = loaded(models, bad)
    state = DesiredState(
        generation=2,
        models={
            "tiny": ModelEntry(
                versions={"1": VersionSource(path=str(good.root)), "2": fresh.source}
            )
        },
    )
    models.install(state, [fresh])
    assert models.resolve("tiny", "2") is fresh
    assert models.not_ready() == {"tiny": f"failed: {fresh.reason}"}  # newest failed, 1 not up
    models.load_all()  # version 1 loads; the failed one is not retried in place
    serving(models.resolve("tiny", "1"))  # type: ignore[arg-type]
    assert models.not_ready() == {}
    assert models.resolve("tiny").version == "1"  # type: ignore[union-attr]


def test_candidate_reuses_a_prepared_version_only_if_nothing_changed(tmp_path: Path) -> None:
    """A version prepared before fork is loaded in place; a reload (new revision) or a version
    already serving gets a fresh object."""
    directory = tiny(tmp_path)
    models = registry(directory)
    models.prepare_all()
    (model,) = models
    assert models.candidate("tiny", "1", model.source) is model
    assert (
        models.candidate("tiny", "1", model.source.model_copy(update={"revision": 1})) is not model
    )
    models.load(model)
    serving(model)
    assert models.candidate("tiny", "1", model.source) is not model


def test_the_default_follows_the_pin_and_what_serves(tmp_path: Path) -> None:
    """Pinned if it serves, else the newest that serves; recomputed when the cached default
    stops serving, without waiting for a change to the registry."""
    models = registry(tiny(tmp_path, "1"), tiny(tmp_path, "2"), tiny(tmp_path, "10"))
    models.load_all()
    for model in models:
        serving(model)
    group = models.get("tiny")
    assert group is not None
    assert [m.version for m in group.ordered()] == ["1", "2", "10"]
    assert group.default() is models.resolve("tiny", "10")
    group.pinned, group.changes = "2", group.changes + 1
    assert group.default() is models.resolve("tiny", "2")
    models.resolve("tiny", "2").engine = None  # type: ignore[union-attr]  # detached
    assert group.default() is models.resolve("tiny", "10")
    for model in models:
        model.engine = None
    assert group.default() is None
    assert models.not_ready() == {"tiny": "starting"}
