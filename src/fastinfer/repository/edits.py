"""The admin API's operations as edits of the desired state: each takes the published state and
gives the state wanted, or raises `ChangeRefused` with nothing changed.

Apart from the manager because they are pure functions of the state: the manager hands each to
`change`, which applies it the one way every change goes (load, switch, retire). What an edit
must ask of the process (where a repository version lives, whether a version serves here, the
record of an unload) it is given as a function.
"""

from __future__ import annotations

from collections.abc import Callable

from fastinfer.repository.changes import ChangeRefused
from fastinfer.repository.state import DesiredState, ModelEntry, Unloaded, VersionSource


def load_version(
    state: DesiredState,
    name: str,
    version: str,
    *,
    stage: bool,
    repository_source: Callable[[str, str], VersionSource],
) -> DesiredState:
    """Load a version (a new revision of one loaded already): one an operator unloaded from
    where it came, any other from the repository (`repository_source`). Staged when `stage`
    and the model has other versions."""
    entry = state.models.get(name, ModelEntry())
    existing = entry.versions.get(version)
    records = dict(state.held(name))
    record = records.pop(version, None)
    if existing is not None:
        source = existing.model_copy(update={"revision": existing.revision + 1})
    elif record is not None:
        source = record.source_back()
    else:
        source = repository_source(name, version)
    pinned = entry.pinned
    if pinned is None and entry.split is None and record is not None and record.pinned:
        pinned = version  # unloaded with its model while pinned: pinned again
    versions = {**entry.versions, version: source}
    staged = entry.staged
    if stage and existing is None and entry.versions and version not in staged:
        staged = (*staged, version)
    loaded = entry.model_copy(update={"versions": versions, "pinned": pinned, "staged": staged})
    return _with_entry(state, name, loaded).with_unloaded(name, records)


def load_model_back(state: DesiredState, name: str) -> DesiredState:
    """Load back every version of `name` an operator unloaded, each from where it came (with
    its pin, unless a pin or split was set meanwhile)."""
    records = state.held(name)
    if not records:  # loaded back meanwhile, through another process
        return state
    entry = state.models.get(name, ModelEntry())
    versions = {**entry.versions, **{v: r.source_back() for v, r in records.items()}}
    pinned = entry.pinned or next((v for v, r in records.items() if r.pinned), None)
    if entry.split is not None:
        pinned = entry.pinned  # a split set meanwhile wins, as a pin would
    back_entry = entry.model_copy(update={"versions": versions, "pinned": pinned})
    return _with_entry(state, name, back_entry).with_unloaded(name, {})


def reload_version(state: DesiredState, name: str, version: str) -> DesiredState:
    """A loaded version at its next revision: its files are read again."""
    entry = _entry(state, name)
    existing = _version(entry, name, version)
    bumped = existing.model_copy(update={"revision": existing.revision + 1})
    versions = {**entry.versions, version: bumped}
    return _with_entry(state, name, entry.model_copy(update={"versions": versions}))


def unload(
    state: DesiredState,
    name: str,
    version: str | None,
    record: Callable[[str, VersionSource], Unloaded],
) -> DesiredState:
    """Unload one version, or every version (the model goes), keeping `record(version, source)`
    of each; the pinned version and a version of the split stay while others would take their
    requests (409)."""
    entry = _entry(state, name)
    if version is not None:
        _version(entry, name, version)
    gone = list(entry.versions) if version is None else [version]
    versions = {v: s for v, s in entry.versions.items() if v not in gone}
    if versions and entry.pinned in gone:
        raise ChangeRefused(
            409,
            "version_pinned",
            f"version {entry.pinned!r} is the pinned default of model {name!r}: "
            f"unloading it would send its unversioned requests to another version; "
            f"pin another version or unpin (PUT /admin/models/{name}/default) first",
            {"pinned": entry.pinned},
        )
    split = entry.split or {}
    if versions and any(v in split for v in gone):
        raise ChangeRefused(
            409,
            "version_in_split",
            f"the default of model {name!r} is split between versions "
            f"{sorted(split)}: unloading one would move its share without anyone "
            f"choosing where; set another default (PUT /admin/models/{name}/default) "
            f"first",
            {"split": split},
        )
    records = {**state.held(name)}
    for v in gone:
        records[v] = record(v, entry.versions[v]).model_copy(update={"pinned": v == entry.pinned})
    if not versions:  # the last version: the model goes (a model with none is unready)
        models = {k: e for k, e in state.models.items() if k != name}
        return state.model_copy(update={"models": models}).with_unloaded(name, records)
    return _with_entry(state, name, entry.kept(versions)).with_unloaded(name, records)


def check_split(split: dict[str, int] | None) -> None:
    """Refuse a split that names no version or gives one a weight below 1 (422)."""
    if split is not None and (not split or any(w <= 0 for w in split.values())):
        raise ChangeRefused(
            422,
            "invalid_split",
            "a split names one or more versions, each with a positive integer weight",
            {"split": split},
        )


def set_default(
    state: DesiredState,
    name: str,
    version: str | None,
    split: dict[str, int] | None,
    ready: Callable[[str, str], None],
) -> DesiredState:
    """Pin `version`, or `split` by weight, or neither (the newest not staged); `ready(name,
    version)` refuses a chosen version that could not answer."""
    entry = _entry(state, name)
    for chosen in [version] if version is not None else list(split or ()):
        _version(entry, name, chosen)
        ready(name, chosen)
    # The operator chose the pin now: a version unloaded while pinned no longer claims it.
    records = {v: r.model_copy(update={"pinned": False}) for v, r in state.held(name).items()}
    chosen_entry = entry.defaulted(version, dict(split) if split is not None else None)
    return _with_entry(state, name, chosen_entry).with_unloaded(name, records)


def _entry(state: DesiredState, name: str) -> ModelEntry:
    entry = state.models.get(name)
    if entry is None:
        raise ChangeRefused(
            404, "model_not_found", f"no model named {name!r}", {"available": sorted(state.models)}
        )
    return entry


def _version(entry: ModelEntry, name: str, version: str) -> VersionSource:
    source = entry.versions.get(version)
    if source is None:
        raise ChangeRefused(
            404,
            "version_not_found",
            f"model {name!r} has no loaded version {version!r}",
            {"loaded": sorted(entry.versions)},
        )
    return source


def _with_entry(state: DesiredState, name: str, entry: ModelEntry) -> DesiredState:
    return state.model_copy(update={"models": {**state.models, name: entry}})
