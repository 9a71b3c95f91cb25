"""`fastinfer build`'s build context, without an engine: pins, extras, the Dockerfile."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from fastinfer.cli import app
from fastinfer.scaffold.image import (
    ImageError,
    extras_lock,
    lock_entries,
    write_context,
)
from tests.conftest import REPO, build_tiny_model, sha256_of, write_config

runner = CliRunner()


def _runtime_model(root: Path, runtime: str, *, name: str = "tree", pin: bool = True) -> Path:
    """A model directory of `runtime` whose artefact is never loaded here: only its pin counts."""
    root.mkdir(parents=True)
    (root / "model.bin").write_bytes(b"pretend " + runtime.encode())
    artefact: dict[str, Any] = {"path": "model.bin"}
    if pin:
        artefact["sha256"] = sha256_of(root / "model.bin")
    return write_config(root, {"name": name, "version": "1", "runtime": runtime,
                               "artefact": artefact})  # fmt: skip


def _context(tmp_path: Path, *models: Path, **options: Any) -> Any:
    return write_context(tmp_path / "context", models=models, project=REPO, **options)


def test_pinned_models_are_copied_and_served_from_models(tmp_path: Path) -> None:
    tiny = build_tiny_model(tmp_path / "tiny")
    tiny.chmod(0o700)  # as pytest's and mkdtemp's directories are: the service's UID is not root
    context = _context(tmp_path, tiny)
    baked = context.directory / "models" / "tiny" / "1"
    assert (baked / "model.joblib").read_bytes() == (tiny / "model.joblib").read_bytes()
    assert {oct(p.stat().st_mode & 0o777) for p in baked.parent.rglob("*")} == {"0o755", "0o644"}
    dockerfile = context.dockerfile.read_text()
    assert 'CMD ["/models/tiny/1"]' in dockerfile
    assert "COPY models/ /models/" in dockerfile
    assert "examples" not in dockerfile  # the example models stay out
    assert context.packages == [] and "extras.lock" not in dockerfile
    assert (context.directory / "requirements" / "runtime.lock").is_file()
    assert (context.directory / "src" / "fastinfer" / "__init__.py").is_file()


def test_an_unpinned_artefact_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no sha256 pin"):
        _context(tmp_path, _runtime_model(tmp_path / "m", "xgboost", pin=False))
    assert not (tmp_path / "context").exists()  # refused before anything is written


def test_an_artefact_that_does_not_match_its_pin_is_refused(tmp_path: Path) -> None:
    tiny = build_tiny_model(tmp_path / "tiny")
    (tiny / "model.joblib").write_bytes(b"tampered")
    with pytest.raises(ImageError, match="sha256 mismatch"):
        _context(tmp_path, tiny)


@pytest.mark.parametrize(
    ("runtime", "package", "system"),
    [("xgboost", "xgboost-cpu", None), ("lightgbm", "lightgbm", "libgomp1")],
)
def test_the_extras_come_from_the_models_runtimes(
    tmp_path: Path, runtime: str, package: str, system: str | None
) -> None:
    context = _context(tmp_path, _runtime_model(tmp_path / "m", runtime))
    assert context.packages == [package]
    extras = (context.directory / "requirements" / "extras.lock").read_text()
    entries = lock_entries(extras)
    assert list(entries) == [package]
    assert entries[package].count("--hash=sha256:") >= 1  # pip --require-hashes checks them
    dockerfile = context.dockerfile.read_text()
    assert "--require-hashes" in dockerfile and "-r /build/requirements/extras.lock" in dockerfile
    assert (f"--no-install-recommends {system}" in dockerfile) == (system is not None)


def test_a_runtime_no_lock_pins_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="torch is pinned in none of"):
        _context(tmp_path, _runtime_model(tmp_path / "m", "torchscript"))


def test_extras_already_in_the_runtime_lock_add_nothing() -> None:
    assert extras_lock(REPO / "requirements", ["numpy", "scikit-learn"]) == ""


def test_the_hardening_of_deploy_dockerfile_is_kept(tmp_path: Path) -> None:
    """The lines that make deploy/Dockerfile safe to run appear unchanged in the generated one."""
    generated = _context(tmp_path, _runtime_model(tmp_path / "m", "xgboost")).dockerfile
    lines = {line.strip(" \\") for line in generated.read_text().splitlines()}
    deploy = (REPO / "deploy" / "Dockerfile").read_text().splitlines()
    kept = [
        line.strip(" \\")
        for line in deploy
        if line.startswith(("USER", "ENTRYPOINT", "STOPSIGNAL", "HEALTHCHECK", "RUN groupadd"))
        or "useradd" in line
        or 'CMD ["python3"' in line
        or "PYTHONDONTWRITEBYTECODE" in line
        or "HOME=/tmp" in line
        or "uninstall --yes setuptools pip" in line
    ]
    assert len(kept) >= 8
    missing = [line for line in kept if line not in lines]
    assert missing == []
    assert "USER 10001:10001" in lines


def test_a_repository_is_served_with_repository(tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    build_tiny_model(repository / "tiny" / "1")
    build_tiny_model(repository / "tiny" / "2", version="2")
    context = write_context(tmp_path / "context", repository=repository, project=REPO)
    assert [(m.name, m.version) for m in context.models] == [("tiny", "1"), ("tiny", "2")]
    assert 'CMD ["--repository", "/models"]' in context.dockerfile.read_text()
    assert (context.directory / "models" / "tiny" / "2" / "model.yaml").is_file()


def test_the_same_model_twice_or_no_model_is_refused(tmp_path: Path) -> None:
    tiny = build_tiny_model(tmp_path / "tiny")
    with pytest.raises(ImageError, match="given twice"):
        _context(tmp_path, tiny, build_tiny_model(tmp_path / "again"))
    with pytest.raises(ImageError, match="not both and not neither"):
        write_context(tmp_path / "context", project=REPO)


def test_offline_wheels_are_carried_and_the_index_turned_off(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "demo-1.0-py3-none-any.whl").write_bytes(b"wheel")
    context = _context(tmp_path, build_tiny_model(tmp_path / "tiny"), offline_wheels=[wheels])
    assert (context.directory / "wheels" / "demo-1.0-py3-none-any.whl").read_bytes() == b"wheel"
    command = context.command("podman", "example/tiny:1")
    assert "PIP_NO_INDEX=1" in command and command[-3:-1] == ["--tag", "example/tiny:1"]
    assert command[2:4] == ["--format", "docker"]  # OCI images would drop the HEALTHCHECK
    assert "--format" not in context.command("docker", "t")


def test_cli_dry_run_writes_the_context_and_prints_the_command(tmp_path: Path) -> None:
    tiny = build_tiny_model(tmp_path / "tiny")
    result = runner.invoke(
        app,
        ["build", str(tiny), "--tag", "t:1", "--engine", "docker", "--dry-run",
         "--context", str(tmp_path / "ctx")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "tiny 1 (pins verified)" in result.output
    assert f"docker build --file {tmp_path / 'ctx' / 'Dockerfile'}" in result.output
    assert (tmp_path / "ctx" / "Dockerfile").is_file()


def test_cli_refuses_an_unpinned_model_with_exit_2(tmp_path: Path) -> None:
    model = _runtime_model(tmp_path / "m", "lightgbm", pin=False)
    result = runner.invoke(app, ["build", str(model), "--engine", "docker", "--dry-run"])
    assert result.exit_code == 2
    assert "no sha256 pin" in result.output


def test_the_label_names_the_models(tmp_path: Path) -> None:
    context = _context(tmp_path, build_tiny_model(tmp_path / "tiny"))
    text = context.dockerfile.read_text()
    assert f"org.opencontainers.image.description={json.dumps('fastinfer serving tiny 1')}" in text
    assert yaml.safe_load((context.directory / "models/tiny/1/model.yaml").read_text())["name"] == (
        "tiny"
    )
