"""The model directory format: one `model.yaml` beside the artefact it describes.

The config is data, not code: the same directory serves on a laptop, in a container and in
Kubernetes. It pins the artefact's sha256 because loading a pickle executes code.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

CONFIG_FILENAME = "model.yaml"
_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
_SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")

FieldType = Literal["integer", "number", "string", "boolean", "any"]
RuntimeName = Literal["sklearn", "onnx", "xgboost", "lightgbm", "python", "torchscript"]
RUNTIME_NAMES: tuple[str, ...] = get_args(RuntimeName)


class ModelConfigError(ValueError):
    """A model directory whose config cannot be read or is inconsistent."""


def check_model_name(name: str) -> None:
    """Refuse a name `model.yaml` would refuse, saying what a name may hold."""
    if not re.match(_NAME_PATTERN, name):
        raise ModelConfigError(
            f"{name!r} is not a valid model name: use lowercase letters, digits, '_', '.' and "
            "'-', starting with a letter or digit, at most 63 characters"
        )


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputField(_Strict):
    """One column of an input row."""

    name: str = Field(min_length=1, max_length=128)
    type: FieldType = "any"
    description: str | None = None
    allowed: list[str | int | float | bool] | None = Field(
        default=None, description="The only values accepted (a categorical field)."
    )
    nullable: bool = Field(default=False, description="The value may be null or left out.")
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = Field(default=None, ge=1)
    shape: list[int] | None = Field(
        default=None,
        description="Per-row tensor shape, e.g. [256]: the value is a nested list of that shape "
        "whose elements have `type`. Absent for a scalar column.",
    )

    @model_validator(mode="after")
    def _check_consistent(self) -> InputField:
        if self.shape is not None and (not self.shape or any(d < 1 for d in self.shape)):
            raise ValueError(f"field {self.name!r}: shape dimensions must be positive")
        if self.allowed is not None and len(self.allowed) == 0:
            raise ValueError(f"field {self.name!r}: 'allowed' must not be empty")
        if (self.minimum is not None or self.maximum is not None) and self.type not in (
            "integer",
            "number",
        ):
            raise ValueError(f"field {self.name!r}: minimum/maximum need a numeric type")
        return self


class ArtefactSpec(_Strict):
    path: str = Field(min_length=1, description="Relative to the model directory.")
    sha256: str | None = Field(default=None, description="Hex digest checked before loading.")

    @field_validator("sha256")
    @classmethod
    def _check_sha(cls, value: str | None) -> str | None:
        if value is not None and not _SHA256_PATTERN.match(value.lower()):
            raise ValueError("sha256 must be 64 hexadecimal characters")
        return value.lower() if value else value


class BatchingSpec(_Strict):
    """How the engine groups and bounds this model's work."""

    max_batch_size: int = Field(
        default=256, ge=1, description="Most rows in one call to the model."
    )
    max_batch_delay_ms: float = Field(
        default=0.0,
        ge=0,
        le=1000,
        description="How long a free worker waits for more rows before running a partial batch.",
    )
    max_queue_size: int = Field(
        default=256, ge=1, description="Most requests waiting; beyond it requests get 503."
    )


class OutputSpec(_Strict):
    kind: Literal["classifier", "regressor", "tensor"] = Field(
        default="classifier",
        description="classifier: {label, probabilities}; regressor: {value}; tensor: the named "
        "raw outputs.",
    )
    labels: dict[str, str] | None = Field(
        default=None,
        description="Maps the model's class values (as strings) to the labels clients see.",
    )

    @field_validator("labels", mode="before")
    @classmethod
    def _stringify_keys(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): str(v) for k, v in value.items()}
        return value


class HooksSpec(_Strict):
    """Async functions run around each prediction (see fastinfer.model.hooks)."""

    pre: list[str] = Field(
        default_factory=list,
        description="'module:function' pre-hooks: may return new rows or raise Reject.",
    )
    post: list[str] = Field(
        default_factory=list, description="'module:function' post-hooks, run after the response."
    )
    timeout_ms: float = Field(
        default=100.0, gt=0, le=10_000, description="Longest a hook may run before it is skipped."
    )


class ModelConfig(_Strict):
    """What `model.yaml` holds."""

    name: Annotated[str, Field(pattern=_NAME_PATTERN)]
    version: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.+-]+$")]
    description: str | None = None
    runtime: RuntimeName = "sklearn"
    runtime_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Options for the runtime, e.g. onnx: {intra_op_threads: 1}; "
        "python: {entrypoint: 'package.module:Model'}.",
    )
    artefact: ArtefactSpec | None = Field(
        default=None, description="The model file; only the python runtime may go without one."
    )
    code_paths: list[str] = Field(
        default_factory=list,
        description="Python files or folders in the model directory that the artefact imports "
        "(custom transformers pickled by reference).",
    )
    inputs: list[InputField] | None = Field(
        default=None, description="The row schema; derived from the artefact when left out."
    )
    allow_extra_fields: bool = False
    example: dict[str, Any] | None = Field(
        default=None, description="One valid row: the docs' example and the startup self-test."
    )
    expected_example_output: Any | None = Field(
        default=None, description="If set, the self-test also checks the example's prediction."
    )
    output: OutputSpec = Field(default_factory=OutputSpec)
    batching: BatchingSpec = Field(default_factory=BatchingSpec)
    hooks: HooksSpec = Field(default_factory=HooksSpec)

    @model_validator(mode="after")
    def _check_inputs(self) -> ModelConfig:
        if self.inputs is not None:
            names = [f.name for f in self.inputs]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"duplicate input fields: {', '.join(dupes)}")
        if self.artefact is None and self.runtime != "python":
            raise ValueError(f"runtime {self.runtime} needs an artefact (path and sha256)")
        artefact_paths = [self.artefact.path] if self.artefact else []
        for rel in [*artefact_paths, *self.code_paths]:
            if Path(rel).is_absolute() or ".." in Path(rel).parts:
                raise ValueError(f"path {rel!r} must stay inside the model directory")
        return self


class ModelDirectory(BaseModel):
    """A parsed model directory: its config and where it lives."""

    model_config = ConfigDict(frozen=True)

    root: Path
    config: ModelConfig
    bare: bool = False  # a lone artefact from the command line: no model.yaml on disk

    @property
    def artefact_path(self) -> Path | None:
        artefact = self.config.artefact
        return self.root / artefact.path if artefact is not None else None

    @property
    def code_paths(self) -> list[Path]:
        return [self.root / rel for rel in self.config.code_paths]


def load_model_directory(
    root: Path | str, *, name: str | None = None, version: str | None = None
) -> ModelDirectory:
    """Read and validate `root/model.yaml`; errors name the file and the problem.

    In a repository (`<name>/<version>/model.yaml`) the path gives the name and version, and the
    config may leave them out; if it states them they must agree. A python-runtime model that
    states no version takes its package's installed version (the "embedded" layout).
    """
    root = Path(root).resolve()
    config_file = root / CONFIG_FILENAME
    if not config_file.is_file():
        raise ModelConfigError(f"{config_file}: no {CONFIG_FILENAME} in the model directory")
    try:
        raw = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ModelConfigError(f"{config_file}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ModelConfigError(f"{config_file}: expected a mapping at the top level")
    for key, implied in (("name", name), ("version", version)):
        if implied is None:
            continue
        stated = raw.setdefault(key, implied)
        if str(stated) != implied:
            raise ModelConfigError(
                f"{config_file}: {key} {stated!r} disagrees with the repository path ({implied!r})"
            )
    if "version" not in raw and raw.get("runtime") == "python":
        raw["version"] = package_version(str((raw.get("runtime_options") or {}).get("entrypoint")))
    if isinstance(raw.get("version"), int | float):
        raw["version"] = str(raw["version"])
    try:
        config = ModelConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ModelConfigError(f"{config_file}: {problems}") from exc
    return ModelDirectory(root=root, config=config)


def dump_config(config: ModelConfig) -> str:
    """YAML for a config, as `fastinfer` and the example training scripts write it."""
    data = config.model_dump(mode="json", exclude_none=True, exclude_defaults=False)
    if config.hooks == HooksSpec():
        del data["hooks"]  # most models have none: keep their files short
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def package_version(entrypoint: str) -> str | None:
    """The installed version of the distribution that provides `module:attribute`'s package."""
    top_level = entrypoint.partition(":")[0].split(".")[0]
    if not top_level:
        return None
    for distribution in importlib.metadata.packages_distributions().get(top_level, []):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return importlib.metadata.version(distribution)
    return None
