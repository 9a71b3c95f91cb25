"""RepositorySync against a folder: which desired state the repository's versions ask for.

The manager is replaced by `Changes`, which applies a mutation the way `ModelManager.change`
does (no change when the models are the same, else the next generation), so what is tested is
the state the sync asks for, not the loading.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fastinfer.repository.changes import ChangeRefused, ChangeResult, Mutation
from fastinfer.repository.layout import VersionPolicy
from fastinfer.repository.state import DesiredState, ModelEntry, Unloaded, VersionSource
from fastinfer.repository.sync import RepositorySync
from tests.unit.test_repository_layout import make_version


class Changes:
    """The manager's `change`, on a state held in memory; `refusals` are raised first."""

    def __init__(self, state: DesiredState | None = None) -> None:
        self.state = state or DesiredState(generation=1)
        self.refusals: list[Exception] = []
        self.asked = 0

    async def change(self, mutate: Mutation) -> ChangeResult:
        self.asked += 1
        if self.refusals:
            raise self.refusals.pop(0)
        wanted = mutate(self.state)
        if wanted.same_models(self.state):
            return ChangeResult(self.state.generation, changed=False)
        self.state = wanted.model_copy(update={"generation": self.state.generation + 1})
        return ChangeResult(self.state.generation, changed=True)

    def versions(self) -> dict[str, list[str]]:
        return {name: sorted(e.versions) for name, e in sorted(self.state.models.items())}


def syncer(root: Path | None, changes: Changes, policy: str = "all") -> RepositorySync:
    return RepositorySync(root, VersionPolicy.parse(policy), changes.change)


def test_sync_sets_the_repository_models_by_the_policy(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    for version in ("1", "2", "10"):
        make_version(root, "iris", version)
    make_version(root, "car", "1")
    changes = Changes()
    result = asyncio.run(syncer(root, changes, "latest:2").sync())
    assert (result.generation, result.changed) == (2, True)
    assert changes.versions() == {"car": ["1"], "iris": ["10", "2"]}
    assert changes.state.models["iris"].versions["10"] == VersionSource(
        path=str((root / "iris" / "10").resolve())
    )
    again = asyncio.run(syncer(root, changes, "latest:2").sync())
    assert (again.generation, again.changed) == (2, False)  # nothing moved: no new generation


def test_sync_follows_folders_that_appear_and_disappear(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    make_version(root, "iris", "1")
    make_version(root, "car", "1")
    changes = Changes()
    sync = syncer(root, changes, "latest")
    asyncio.run(sync.sync())
    make_version(root, "iris", "2")
    (root / "car" / "1" / "model.yaml").unlink()
    asyncio.run(sync.sync())
    assert changes.versions() == {"iris": ["2"]}
    assert changes.state.generation == 3


def test_models_from_outside_the_repository_are_left_alone(tmp_path: Path) -> None:
    """Models given by path (--model-dir) share the state with the repository's; a sync must
    not retire them because the repository does not have them."""
    root = tmp_path / "repo"
    make_version(root, "iris", "1")
    elsewhere = ModelEntry(versions={"1": VersionSource(path=str(tmp_path / "own"))}, pinned="1")
    changes = Changes(DesiredState(generation=1, models={"own": elsewhere}))
    asyncio.run(syncer(root, changes).sync())
    assert changes.versions() == {"iris": ["1"], "own": ["1"]}
    assert changes.state.models["own"] == elsewhere


def test_a_pin_survives_a_sync_while_its_version_is_still_chosen(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    make_version(root, "iris", "1")
    make_version(root, "iris", "2")
    changes = Changes()
    sync = syncer(root, changes, "latest:2")
    asyncio.run(sync.sync())
    entry = changes.state.models["iris"]  # an operator pins version 1
    changes.state = changes.state.model_copy(
        update={"models": {"iris": entry.model_copy(update={"pinned": "1"})}}
    )
    make_version(root, "iris", "0")  # older: not chosen, the state does not move
    assert not asyncio.run(sync.sync()).changed
    assert changes.state.models["iris"].pinned == "1"
    make_version(root, "iris", "3")  # latest:2 is now 2 and 3
    assert asyncio.run(sync.sync()).changed
    assert changes.versions() == {"iris": ["2", "3"]}
    assert changes.state.models["iris"].pinned is None  # the pinned version left: no pin


def test_a_kept_version_keeps_its_source_and_revision(tmp_path: Path) -> None:
    """A sync must not turn a reloaded version (revision > 0) back into a fresh source, which
    would look like a change and reload it again."""
    root = tmp_path / "repo"
    make_version(root, "iris", "1")
    reloaded = VersionSource(path=str((root / "iris" / "1").resolve()), revision=3)
    changes = Changes(
        DesiredState(
            generation=5, models={"iris": ModelEntry(versions={"1": reloaded}, pinned="1")}
        )
    )
    result = asyncio.run(syncer(root, changes).sync())
    assert not result.changed
    assert changes.state.models["iris"].versions["1"].revision == 3
    assert changes.state.models["iris"].pinned == "1"


def test_load_model_adds_one_model_and_removes_nothing(tmp_path: Path) -> None:
    """The v2 `load` of one model: other models, even repository ones gone from disk, stay."""
    root = tmp_path / "repo"
    make_version(root, "iris", "1")
    make_version(root, "car", "1")
    changes = Changes()
    sync = syncer(root, changes)
    asyncio.run(sync.sync())
    make_version(root, "tree", "7")
    (root / "car" / "1" / "model.yaml").unlink()
    asyncio.run(sync.load_model("tree"))
    assert changes.versions() == {"car": ["1"], "iris": ["1"], "tree": ["7"]}
    with pytest.raises(ChangeRefused) as caught:
        asyncio.run(sync.load_model("car"))
    assert (caught.value.status, caught.value.code) == (404, "model_not_found")


def unload(changes: Changes, sync: RepositorySync, name: str, version: str) -> None:
    """What the manager's unload does to the state: the version goes, a record stays."""
    entry = changes.state.models[name]
    source = entry.versions[version]
    record = Unloaded(
        source=source,
        runtime="sklearn",
        by="admin token",
        at=datetime.now(UTC),
        files=sync.files_of(source),
        pinned=entry.pinned == version,
    )
    rest = {v: s for v, s in entry.versions.items() if v != version}
    models = {**changes.state.models, name: ModelEntry(versions=rest)}
    if not rest:
        del models[name]
    held = {**changes.state.held(name), version: record}
    changes.state = changes.state.model_copy(update={"models": models}).with_unloaded(name, held)


def test_an_operator_unload_stands_until_the_version_files_change(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    make_version(root, "iris", "1")
    make_version(root, "iris", "2")
    changes = Changes()
    sync = syncer(root, changes)
    asyncio.run(sync.sync())
    unload(changes, sync, "iris", "1")
    assert not asyncio.run(sync.sync()).changed  # the folder did not change: it stays out
    assert changes.versions() == {"iris": ["2"]}
    make_version(root, "iris", "3")  # another version's folder is no change to version 1
    asyncio.run(sync.sync())
    assert changes.versions() == {"iris": ["2", "3"]}
    (root / "iris" / "1" / "model.yaml").write_text("name: iris  # rebuilt\n")
    assert asyncio.run(sync.sync()).changed
    assert changes.versions() == {"iris": ["1", "2", "3"]}
    assert changes.state.models["iris"].versions["1"].revision == 1  # not the retired engine's
    assert changes.state.unloaded == {}


def test_a_model_unloaded_whole_stays_out_and_comes_back_with_its_pin(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    make_version(root, "iris", "1")
    make_version(root, "iris", "2")
    changes = Changes()
    sync = syncer(root, changes)
    asyncio.run(sync.sync())
    entry = changes.state.models["iris"]
    changes.state = changes.state.model_copy(
        update={"models": {"iris": entry.model_copy(update={"pinned": "1"})}}
    )
    unload(changes, sync, "iris", "1")
    unload(changes, sync, "iris", "2")
    assert not asyncio.run(sync.sync()).changed
    assert changes.versions() == {}
    asyncio.run(sync.load_model("iris"))  # an operator's load brings every version back
    assert changes.versions() == {"iris": ["1", "2"]}
    assert changes.state.models["iris"].pinned == "1"
    assert changes.state.unloaded == {}


def test_unloads_outside_the_repository_are_left_to_the_operator(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    make_version(root, "iris", "1")
    own = VersionSource(path=str(make_version(tmp_path, "own", "1")))
    changes = Changes(DesiredState(generation=1, models={"own": ModelEntry(versions={"1": own})}))
    sync = syncer(root, changes)
    asyncio.run(sync.sync())
    unload(changes, sync, "own", "1")
    assert changes.state.held("own")["1"].files is None
    asyncio.run(sync.sync())
    assert changes.versions() == {"iris": ["1"]}
    assert "1" in changes.state.held("own")


def test_a_version_that_failed_to_load_is_skipped_until_its_files_change(tmp_path: Path) -> None:
    """Polling must not retry a broken upload every few seconds (and log it every time); an
    edit to its files makes it a candidate again."""
    root = tmp_path / "repo"
    make_version(root, "iris", "1")
    changes = Changes()
    sync = syncer(root, changes)
    asyncio.run(sync.sync())
    broken = make_version(root, "iris", "2")
    changes.refusals.append(
        ChangeRefused(422, "load_failed", "nothing changed", {"failed": {"iris/2": "boom"}})
    )
    with pytest.raises(ChangeRefused):
        asyncio.run(sync.sync())
    assert not asyncio.run(sync.sync()).changed  # version 2 is skipped
    assert changes.versions() == {"iris": ["1"]}
    (broken / "model.yaml").write_text("name: iris  # fixed\n")
    assert asyncio.run(sync.sync()).changed
    assert changes.versions() == {"iris": ["1", "2"]}


def test_other_refusals_do_not_mark_versions_bad(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    make_version(root, "iris", "1")
    changes = Changes()
    changes.refusals.append(ChangeRefused(409, "busy", "another change is in progress"))
    sync = syncer(root, changes)
    with pytest.raises(ChangeRefused, match="in progress"):
        asyncio.run(sync.sync())
    assert asyncio.run(sync.sync()).changed
    assert changes.versions() == {"iris": ["1"]}


def test_source_resolves_a_version_and_refuses_names_that_are_not_folders(
    tmp_path: Path,
) -> None:
    root = tmp_path / "repo"
    make_version(root, "iris", "1")
    make_version(root, "iris", "2")
    sync = syncer(root, Changes())
    assert sync.source("iris", "1") == VersionSource(path=str((root / "iris" / "1").resolve()))
    for name, version in (("..", "1"), ("iris", ".."), ("iris/1", "x"), ("iris", "1/../2")):
        with pytest.raises(ChangeRefused) as caught:
            sync.source(name, version)
        assert (caught.value.status, caught.value.code) == (400, "invalid_name")
    with pytest.raises(ChangeRefused) as caught:
        sync.source("iris", "3")
    assert (caught.value.status, caught.value.code) == (404, "version_not_found")
    assert caught.value.details == {"available": ["1", "2"]}


def test_source_refuses_a_link_out_of_the_repository(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    make_version(root, "iris", "1")
    os.symlink(make_version(tmp_path / "elsewhere", "x", "1"), root / "iris" / "9")
    with pytest.raises(ChangeRefused) as caught:
        syncer(root, Changes()).source("iris", "9")
    assert caught.value.status == 404


def test_without_a_repository_every_operation_is_refused() -> None:
    sync = syncer(None, Changes())
    for operation in (lambda: sync.source("iris", "1"), lambda: asyncio.run(sync.sync())):
        with pytest.raises(ChangeRefused) as caught:
            operation()
        assert (caught.value.status, caught.value.code) == (409, "no_repository")
    with pytest.raises(ChangeRefused, match="no model repository"):
        asyncio.run(sync.load_model("iris"))


def test_polling_carries_on_after_a_failed_sync(tmp_path: Path) -> None:
    """The poller logs a refused or crashed sync and tries again next time; it never dies."""
    root = tmp_path / "repo"
    make_version(root, "iris", "1")
    changes = Changes()
    changes.refusals += [
        ChangeRefused(409, "busy", "another change is in progress"),
        RuntimeError("a bug in a change"),
    ]

    async def scenario() -> None:
        poller = asyncio.create_task(syncer(root, changes).poll(0.01))
        for _ in range(2000):  # up to 20 s on a loaded machine; a few polls normally
            if changes.state.models or poller.done():
                break
            await asyncio.sleep(0.01)
        assert not poller.done()
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller

    asyncio.run(scenario())
    assert changes.asked >= 3
    assert changes.versions() == {"iris": ["1"]}
