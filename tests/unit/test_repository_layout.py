"""The repository on disk: version order, the version policy, names, and the folder scan."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fastinfer.repository.layout import (
    VersionPolicy,
    fingerprint,
    inside,
    newest,
    repository_directories,
    scan_repository,
    valid_name,
    valid_version,
    version_key,
)
from tests.conftest import build_tiny_model


def make_version(root: Path, name: str, version: str, config: str = "{}\n") -> Path:
    """A version folder as the scan sees it (only model.yaml's presence matters to it)."""
    folder = root / name / version
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.yaml").write_text(config)
    return folder


def test_versions_sort_the_way_people_number_them() -> None:
    versions = ["1.10", "2", "1.9", "10", "9", "1.0.1", "1.0rc1", "nightly", "beta"]
    assert sorted(versions, key=version_key) == [
        "beta",  # names that are not versions come first, alphabetically
        "nightly",
        "1.0rc1",
        "1.0.1",
        "1.9",
        "1.10",
        "2",
        "9",
        "10",
    ]
    assert newest(["9", "10", "1.10"]) == "10"
    assert newest(["nightly", "1"]) == "1"  # a real version beats a name
    assert newest([]) is None


@pytest.mark.parametrize(
    ("text", "latest"),
    [("all", None), ("latest", 1), ("latest:3", 3), ("  latest:12 ", 12)],
)
def test_version_policy_parses(text: str, latest: int | None) -> None:
    assert VersionPolicy.parse(text) == VersionPolicy(latest)


@pytest.mark.parametrize("text", ["", "newest", "latest:0", "latest:-1", "latest:", "ALL", "1"])
def test_version_policy_refuses_what_it_does_not_know(text: str) -> None:
    with pytest.raises(ValueError, match="version policy"):
        VersionPolicy.parse(text)


def test_version_policy_selects_the_newest_versions_oldest_first() -> None:
    versions = {"1", "10", "2", "9"}
    assert VersionPolicy(None).select(versions) == ["1", "2", "9", "10"]
    assert VersionPolicy(1).select(versions) == ["10"]
    assert VersionPolicy(2).select(versions) == ["9", "10"]
    assert VersionPolicy(9).select(versions) == ["1", "2", "9", "10"]
    assert VersionPolicy(1).select([]) == []


@pytest.mark.parametrize("name", ["iris", "car-eval", "m_1", "v2.model", "0"])
def test_plain_folder_names_are_valid_model_names(name: str) -> None:
    assert valid_name(name)


@pytest.mark.parametrize("name", ["", ".", "..", ".hidden", "a/b", "Iris", "-x", "a b", "a" * 64])
def test_names_that_could_escape_or_hide_are_not(name: str) -> None:
    assert not valid_name(name)


def test_version_names() -> None:
    assert valid_version("1.2.3+build.4")
    assert valid_version("V2")
    for bad in ("", "..", ".1", "1/2", "1 2", "x" * 65):
        assert not valid_version(bad), bad


def test_scan_finds_versions_with_a_config_and_skips_everything_else(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    one = make_version(root, "iris", "1")
    two = make_version(root, "iris", "2")
    make_version(root, "car", "3")
    (root / "iris" / "3").mkdir()  # no model.yaml: not a version (yet)
    make_version(root, ".git", "1")  # hidden
    make_version(root, "Bad Name", "1")
    make_version(root, "iris", ".tmp-upload")
    (root / "README.md").write_text("notes")
    (root / "empty").mkdir()  # a model folder with no versions is not a model
    assert scan_repository(root) == {
        "car": {"3": (root / "car" / "3").resolve()},
        "iris": {"1": one.resolve(), "2": two.resolve()},
    }


def test_scan_ignores_links_that_lead_out_of_the_repository(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    make_version(root, "iris", "1")
    outside = make_version(tmp_path / "elsewhere", "x", "9")
    os.symlink(outside, root / "iris" / "9")
    make_version(root, "shared", "1")
    os.symlink(root / "shared" / "1", root / "iris" / "2")  # a link inside is fine
    assert not inside(root, root / "iris" / "9")
    assert inside(root, root / "iris" / "2")
    assert sorted(scan_repository(root)["iris"]) == ["1", "2"]


def test_scan_of_a_missing_repository_is_empty(tmp_path: Path) -> None:
    assert scan_repository(tmp_path / "nowhere") == {}


def test_fingerprint_changes_when_a_file_in_the_version_changes(tmp_path: Path) -> None:
    folder = make_version(tmp_path, "iris", "1")
    (folder / "model.joblib").write_bytes(b"weights")
    before = fingerprint(folder)
    assert fingerprint(folder) == before
    (folder / "model.joblib").write_bytes(b"new weights")
    assert fingerprint(folder) != before
    assert [entry[0] for entry in fingerprint(folder)] == ["model.joblib", "model.yaml"]


def test_startup_directories_follow_the_policy_and_skip_unreadable_versions(
    tmp_path: Path,
) -> None:
    """One bad version folder must not keep the rest of the repository from serving."""
    root = tmp_path / "repo"
    for version in ("1", "2"):
        build_tiny_model(root / "tiny" / version, version=version)
    make_version(root, "broken", "1", config="name: [not, a, name\n")
    make_version(root, "other", "5", config="name: someone-else\n")  # disagrees with its path
    directories = repository_directories(root, VersionPolicy(None))
    assert [(d.config.name, d.config.version) for d in directories] == [
        ("tiny", "1"),
        ("tiny", "2"),
    ]
    latest = repository_directories(root, VersionPolicy(1))
    assert [(d.config.name, d.config.version) for d in latest] == [("tiny", "2")]
