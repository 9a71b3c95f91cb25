"""The rule for real components (tests/integration/debian.py): a missing one that cannot be
installed skips the test with one line saying what to install, except in CI, where it fails."""

from __future__ import annotations

import tomllib

import pytest

from tests.conftest import REPO
from tests.integration import debian, test_container


@pytest.fixture
def no_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(debian.os, "geteuid", lambda: 1000)


@pytest.mark.usefixtures("no_root")
def test_without_root_a_missing_package_is_skipped_locally_with_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception) as skipped:
        debian.apt_install("postgresql", needed_for="a real PostgreSQL")
    message = str(skipped.value)
    assert "\n" not in message
    assert "sudo apt-get install postgresql" in message
    assert "a real PostgreSQL" in message


@pytest.mark.usefixtures("no_root")
@pytest.mark.parametrize("value", ["true", "1", "TRUE"])
def test_in_ci_a_missing_package_is_a_failure_never_a_skip(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match="CI must run this test: needs wrk"):
        debian.apt_install("wrk")


@pytest.mark.usefixtures("no_root")
def test_a_missing_tool_is_installed_from_its_package_or_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(debian.shutil, "which", lambda tool: None)
    with pytest.raises(pytest.skip.Exception, match="needs prometheus"):
        debian.require_tool("prometheus", "prometheus")


def test_the_container_test_depends_only_on_the_projects_own_podman_configuration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    conf = test_container.RUNC_CONF
    assert conf.is_file() and conf.is_relative_to(REPO)
    settings = tomllib.loads(conf.read_text())
    assert settings["engine"]["runtime"] == "runc"
    assert "nofile=1024:1024" in settings["containers"]["default_ulimits"]
    assert "shared" not in (REPO / "tests" / "integration" / "test_container.py").read_text()
    # The setting wins over detection (no podman is run): a path, or podman's default.
    monkeypatch.delenv("CONTAINERS_CONF", raising=False)
    for setting, expected in ((str(conf), str(conf)), ("default", None)):
        monkeypatch.setattr(test_container, "_containers_conf", [])
        monkeypatch.setenv("FASTINFER_TEST_CONTAINERS_CONF", setting)
        test_container._choose_runtime()
        assert test_container._podman_env().get("CONTAINERS_CONF") == expected
