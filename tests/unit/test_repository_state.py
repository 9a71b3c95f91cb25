"""The desired state (what should be served) and the results of a change to it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pydantic
import pytest

from fastinfer.model.spec import ModelConfigError, load_model_directory
from fastinfer.repository.changes import ChangeRefused, ChangeResult
from fastinfer.repository.registry import bare_artefact
from fastinfer.repository.state import (
    DesiredState,
    ModelEntry,
    Unloaded,
    VersionSource,
    source_of,
)
from tests.conftest import build_tiny_model, sha256_of

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_the_state_is_frozen_data() -> None:
    """Processes share it and compare it: nobody may change one in place."""
    state = DesiredState(models={"m": ModelEntry(versions={"1": VersionSource(path="/x")})})
    with pytest.raises(pydantic.ValidationError):
        state.generation = 5  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        state.models["m"].pinned = "1"  # type: ignore[misc]
    assert DesiredState.model_validate_json(state.model_dump_json()) == state


def test_same_models_ignores_the_generation() -> None:
    """A change that asks for what is already there is no change, whatever its generation."""
    entry = ModelEntry(versions={"1": VersionSource(path="/m/1")}, pinned="1")
    a = DesiredState(generation=3, models={"m": entry})
    assert a.same_models(DesiredState(generation=9, models={"m": entry}))
    assert not a.same_models(DesiredState(generation=3, models={}))
    unpinned = ModelEntry(versions=entry.versions)
    assert not a.same_models(DesiredState(generation=3, models={"m": unpinned}))
    reloaded = ModelEntry(versions={"1": VersionSource(path="/m/1", revision=1)}, pinned="1")
    assert not a.same_models(DesiredState(generation=3, models={"m": reloaded}))
    record = Unloaded(source=VersionSource(path="/m/2"), runtime="sklearn", by="x", at=NOW)
    held = a.with_unloaded("m", {"2": record})
    assert not a.same_models(held)  # an operator's unload is a change, to publish
    assert held.with_unloaded("m", {}).same_models(a)
    assert DesiredState.model_validate_json(held.model_dump_json()) == held


def test_a_directory_source_rereads_its_config(tmp_path: Path) -> None:
    """A version's model.yaml is read again on every load (a reload picks up an edit)."""
    directory = build_tiny_model(tmp_path / "tiny" / "1")
    source = source_of(load_model_directory(directory))
    assert source == VersionSource(path=str(directory.resolve()))
    config = directory / "model.yaml"
    config.write_text(config.read_text().replace("expected_example_output: high", ""))
    reread = source.directory("tiny", "1")
    assert reread.config.expected_example_output is None
    with pytest.raises(ModelConfigError, match="disagrees with the repository path"):
        source.directory("tiny", "2")


def test_a_bare_artefact_source_keeps_its_pin(tmp_path: Path) -> None:
    directory = build_tiny_model(tmp_path / "tiny")
    artefact = directory / "model.joblib"
    bare = bare_artefact("solo", artefact, sha256_of(artefact))
    source = source_of(bare, bare=True)
    assert source.kind == "artefact"
    assert (source.path, source.sha256) == (str(artefact.resolve()), sha256_of(artefact))
    rebuilt = source.directory("solo", "unversioned")
    assert rebuilt.root == artefact.resolve().parent
    assert rebuilt.config.artefact is not None
    assert rebuilt.config.artefact.sha256 == sha256_of(artefact)
    assert rebuilt.artefact_path == artefact.resolve()


def test_change_results_and_refusals() -> None:
    result = ChangeResult(4, changed=True, workers={"w1": "applied"})
    assert result.as_dict() == {"generation": 4, "changed": True, "workers": {"w1": "applied"}}
    assert ChangeResult(4, changed=False).as_dict()["workers"] == {}
    refused = ChangeRefused(422, "load_failed", "nothing changed", {"failed": {"m/1": "boom"}})
    assert (refused.status, refused.code, refused.message) == (
        422,
        "load_failed",
        "nothing changed",
    )
    assert refused.details == {"failed": {"m/1": "boom"}}
    assert str(refused) == "nothing changed"
