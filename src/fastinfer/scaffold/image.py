"""The build context for `fastinfer build`: an image with given models baked in.

The image follows deploy/Dockerfile's hardening (a fixed UID >= 10000, nothing written outside
/tmp and /dev/shm, exec-form entrypoint, a HEALTHCHECK, every wheel checked against its sha256
in a lock) but holds only what its models need:

- Models: each directory is checked before it is copied: its model.yaml must load, its artefact
  must be pinned (a build is where a pin is cheapest to enforce) and its bytes must match the
  pin, with the project's own integrity check. They land root-owned under /models/NAME/VERSION.
- Runtime extras: XGBoost and LightGBM are optional dependencies, absent from
  requirements/runtime.lock. Their locked lines, hashes included, are taken from the first lock
  that pins them (runtime.lock, then dev.lock: the one `pip-compile --extra dev` resolved
  together with the runtime, so the versions agree) into requirements/extras.lock; pip installs
  both with --require-hashes, so a dependency missing from the locks fails the build.
- Left out: the example models, pip and setuptools, and the packages' own test suites.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fastinfer.model.integrity import IntegrityError, sha256_file
from fastinfer.model.spec import CONFIG_FILENAME, ModelConfigError, load_model_directory

DEFAULT_BASE_IMAGE = "python:3.11-slim-bookworm"
UID = 10001
MODELS_ROOT = "/models"
LOCKS = ("runtime.lock", "dev.lock")  # searched in this order for a runtime's packages
EXTRAS_LOCK = "extras.lock"
# What each runtime needs beyond the runtime lock (PyPI names, as the locks spell them).
RUNTIME_PACKAGES: dict[str, tuple[str, ...]] = {
    "xgboost": ("xgboost-cpu",),  # the CPU build: no 300 MB of CUDA libraries
    "lightgbm": ("lightgbm",),
    "torchscript": ("torch",),
}
# Debian packages a runtime's wheel does not bundle: LightGBM links the system's OpenMP.
RUNTIME_SYSTEM_PACKAGES: dict[str, tuple[str, ...]] = {"lightgbm": ("libgomp1",)}
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".git")


class ImageError(RuntimeError):
    """A model or project that cannot become an image; the message says which and why."""


@dataclass(frozen=True)
class BakedModel:
    """A verified model directory and where it goes in the image."""

    source: Path
    name: str
    version: str
    runtime: str

    @property
    def target(self) -> str:
        return f"{MODELS_ROOT}/{self.name}/{self.version}"


@dataclass
class BuildContext:
    """A written build context and how to build it."""

    directory: Path
    models: list[BakedModel]
    packages: list[str]
    system_packages: list[str]
    repository: bool
    offline: bool
    build_args: dict[str, str] = field(default_factory=dict)

    @property
    def dockerfile(self) -> Path:
        return self.directory / "Dockerfile"

    def command(self, engine: str, tag: str) -> list[str]:
        """The engine's build command; podman writes the docker format, which has HEALTHCHECK."""
        command = [engine, "build"]
        if Path(engine).name == "podman":
            command += ["--format", "docker"]
        command += ["--file", str(self.dockerfile)]
        for key, value in self.build_args.items():
            command += ["--build-arg", f"{key}={value}"]
        return [*command, "--tag", tag, str(self.directory)]


def normalise(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_entries(text: str) -> dict[str, str]:
    """The `name==version \\` blocks of a pip-compile lock (hash lines included), by name."""
    entries: dict[str, str] = {}
    key: str | None = None
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==", line)
        if match:
            key = normalise(match.group(1))
            entries[key] = line + "\n"
        elif key is not None and line.startswith("    --hash="):
            entries[key] += line + "\n"
        else:
            key = None
    return entries


def extras_lock(requirements: Path, packages: Sequence[str]) -> str:
    """The locked lines for `packages` that runtime.lock lacks, from the first lock pinning them."""
    locks = {name: lock_entries((requirements / name).read_text()) for name in LOCKS
             if (requirements / name).is_file()}  # fmt: skip
    if LOCKS[0] not in locks:
        raise ImageError(f"{requirements / LOCKS[0]}: no such lock")
    lines = []
    for package in packages:
        key = normalise(package)
        if key in locks[LOCKS[0]]:
            continue
        found = next((lock[key] for lock in locks.values() if key in lock), None)
        if found is None:
            raise ImageError(
                f"{package} is pinned in none of {', '.join(LOCKS)} in {requirements}: lock it "
                "(with hashes) before building an image that needs it"
            )
        lines.append(found)
    return "".join(lines)


def verify_model(
    directory: Path, *, name: str | None = None, version: str | None = None
) -> BakedModel:
    """Load `directory`'s model.yaml and check its artefact against the sha256 pin."""
    try:
        model = load_model_directory(directory, name=name, version=version)
    except ModelConfigError as exc:
        raise ImageError(str(exc)) from None
    config, artefact = model.config, model.artefact_path
    if config.artefact is not None and artefact is not None:
        if config.artefact.sha256 is None:
            raise ImageError(
                f"{artefact}: no sha256 pin in {model.root / CONFIG_FILENAME}; an image bakes "
                f"in only pinned artefacts (its sha256 is {sha256_file(artefact)})"
            )
        if not artefact.is_file():
            raise ImageError(f"{artefact}: no such artefact file")
        actual = sha256_file(artefact)
        if actual != config.artefact.sha256:
            raise ImageError(str(IntegrityError(artefact, config.artefact.sha256, actual)))
    return BakedModel(model.root, config.name, config.version, config.runtime)


def repository_models(repository: Path) -> list[BakedModel]:
    """Every NAME/VERSION/model.yaml of a model repository, each verified."""
    if not repository.is_dir():
        raise ImageError(f"{repository}: the model repository is not a directory")
    found = sorted(repository.glob(f"*/*/{CONFIG_FILENAME}"))
    if not found:
        raise ImageError(f"{repository}: no NAME/VERSION/{CONFIG_FILENAME} in the repository")
    return [
        verify_model(path.parent, name=path.parent.parent.name, version=path.parent.name)
        for path in found
    ]


def project_root(start: Path) -> Path:
    """The fastinfer checkout whose pyproject, source and locks go into the image."""
    for candidate in (start, *start.parents):
        if (candidate / "pyproject.toml").is_file() and (candidate / "src" / "fastinfer").is_dir():
            return candidate
    raise ImageError(
        f"no fastinfer checkout at or above {start} (pyproject.toml, src/fastinfer, "
        "requirements/): pass --project DIR"
    )


def _copy_wheels(sources: Sequence[Path], destination: Path) -> None:
    """Hard links where the filesystem allows (a wheelhouse is hundreds of MB), else copies."""
    destination.mkdir(parents=True, exist_ok=True)
    for source in sources:
        if not source.is_dir():
            raise ImageError(f"{source}: the offline wheel directory does not exist")
        for wheel in sorted(source.iterdir()):
            if not wheel.is_file() or (destination / wheel.name).exists():
                continue
            try:
                os.link(wheel.resolve(), destination / wheel.name)
            except OSError:
                shutil.copy2(wheel, destination / wheel.name)


def _world_readable(root: Path) -> None:
    """Directories 0755, files 0644: COPY keeps modes, and the service's UID owns none of them
    (a model made under a 0700 temporary directory would otherwise be unreadable to it)."""
    root.chmod(0o755)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def write_context(
    directory: Path,
    *,
    models: Sequence[Path] = (),
    repository: Path | None = None,
    project: Path,
    base_image: str = DEFAULT_BASE_IMAGE,
    offline_wheels: Sequence[Path] = (),
    revision: str = "unknown",
) -> BuildContext:
    """Verify the models and write a build context for them into the empty `directory`."""
    if bool(models) == (repository is not None):
        raise ImageError("give model directories or --repository DIR, not both and not neither")
    baked = repository_models(repository) if repository is not None else [
        verify_model(path) for path in models
    ]  # fmt: skip
    seen: set[tuple[str, str]] = set()
    for model in baked:
        if (model.name, model.version) in seen:
            raise ImageError(f"{model.name} {model.version} is given twice")
        seen.add((model.name, model.version))
    runtimes = sorted({model.runtime for model in baked})
    packages = sorted({p for runtime in runtimes for p in RUNTIME_PACKAGES.get(runtime, ())})
    system = sorted({p for r in runtimes for p in RUNTIME_SYSTEM_PACKAGES.get(r, ())})
    extras = extras_lock(project / "requirements", packages)

    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.iterdir()):
        raise ImageError(f"{directory}: the build context directory is not empty")
    (directory / "requirements").mkdir()
    shutil.copy2(project / "requirements" / LOCKS[0], directory / "requirements" / LOCKS[0])
    (directory / "requirements" / EXTRAS_LOCK).write_text(extras)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(project / name, directory / name)
    shutil.copytree(project / "src", directory / "src", ignore=_IGNORED)
    for model in baked:
        shutil.copytree(model.source, directory / model.target.lstrip("/"), ignore=_IGNORED)
    _world_readable(directory / "models")
    _copy_wheels(offline_wheels, directory / "wheels")
    context = BuildContext(
        directory,
        baked,
        packages,
        system,
        repository=repository is not None,
        offline=bool(offline_wheels),
        build_args={"BASE_IMAGE": base_image, "GIT_REVISION": revision},
    )
    if offline_wheels:
        context.build_args["PIP_NO_INDEX"] = "1"
    context.dockerfile.write_text(dockerfile(context))
    return context


def dockerfile(context: BuildContext) -> str:
    """deploy/Dockerfile's recipe for these models only (test_image checks they agree)."""
    extras = " -r /build/requirements/extras.lock" if context.packages else ""
    described = ", ".join(f"{m.name} {m.version}" for m in context.models)
    if context.repository:
        command = ["--repository", MODELS_ROOT]
    else:
        command = [model.target for model in context.models]
    system = ""
    if context.system_packages:
        system = (
            "# What a runtime's wheel does not bundle (needs the Debian mirror at build time).\n"
            "RUN apt-get update \\\n"
            "    && apt-get install --yes --no-install-recommends "
            f"{' '.join(context.system_packages)} \\\n"
            "    && rm -rf /var/lib/apt/lists/*\n"
        )
    return f"""\
# Written by `fastinfer build`: deploy/Dockerfile's recipe with these models baked in.
# Models: {described}. Runtime extras: {", ".join(context.packages) or "none"}.
ARG BASE_IMAGE={DEFAULT_BASE_IMAGE}

FROM ${{BASE_IMAGE}} AS builder
ARG PIP_NO_INDEX=0
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \\
    PIP_NO_CACHE_DIR=1 \\
    PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/fastinfer
COPY requirements/ /build/requirements/
COPY wheels/ /build/wheels/
# Every file checked against its sha256 in a lock: the runtime's, plus the models' extras.
RUN /opt/fastinfer/bin/pip install --require-hashes --find-links /build/wheels \\
        -r /build/requirements/runtime.lock{extras}
WORKDIR /build/src
COPY pyproject.toml README.md ./
COPY src/ src/
# The project without dependencies (all locked above); then drop what the service never runs:
# the installers and the packages' own test suites.
RUN /opt/fastinfer/bin/pip install --no-deps --find-links /build/wheels . \\
    && /opt/fastinfer/bin/pip check \\
    && /opt/fastinfer/bin/python -m pip uninstall --yes setuptools pip \\
    && find /opt/fastinfer/lib -depth -type d -path '*/site-packages/*/tests' \\
        -exec rm -rf {{}} +

FROM ${{BASE_IMAGE}}
ARG BASE_IMAGE
ARG GIT_REVISION=unknown
LABEL org.opencontainers.image.title="fastinfer" \\
      org.opencontainers.image.description={json.dumps("fastinfer serving " + described)} \\
      org.opencontainers.image.licenses="Apache-2.0" \\
      org.opencontainers.image.revision="${{GIT_REVISION}}" \\
      org.opencontainers.image.base.name="${{BASE_IMAGE}}"
{system}RUN groupadd --gid {UID} fastinfer \\
    && useradd --no-log-init --uid {UID} --gid {UID} --no-create-home \\
        --home-dir /nonexistent --shell /usr/sbin/nologin fastinfer
COPY --from=builder /opt/fastinfer /opt/fastinfer
# Root-owned and read-only to the service; each artefact matched its pin when this was written.
COPY models/ {MODELS_ROOT}/
ENV PATH=/opt/fastinfer/bin:${{PATH}} \\
    PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1 \\
    HOME=/tmp \\
    FASTINFER_HOST=0.0.0.0 \\
    FASTINFER_PORT=8000 \\
    FASTINFER_HEALTH_PORT=8001 \\
    FASTINFER_LOG_FORMAT=json \\
    FASTINFER_GIT_REVISION=${{GIT_REVISION}}
WORKDIR /app
USER {UID}:{UID}
EXPOSE 8000 8001
STOPSIGNAL SIGTERM
{_healthcheck()}
ENTRYPOINT ["fastinfer", "serve"]
CMD {json.dumps(command)}
"""


def _healthcheck() -> str:
    probe = (
        "import os, urllib.request; port = os.environ.get('FASTINFER_HEALTH_PORT') or "
        "os.environ.get('FASTINFER_PORT') or '8000'; urllib.request.urlopen('http://127.0.0.1:' "
        "+ port + '/livez', timeout=2)"
    )
    return (
        "HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \\\n"
        f"    CMD {json.dumps(['python3', '-c', probe])}"
    )
