"""Framework runtimes, looked up by the `runtime` name in a model's config.

Each runtime's module imports its framework, so a runtime is imported only when a model uses it:
serving ONNX models never imports XGBoost, and an optional framework (torch) is needed only by
the models that name it.
"""

from __future__ import annotations

import pkgutil
from pathlib import Path
from typing import Any

from fastinfer.model.spec import RUNTIME_NAMES, OutputSpec
from fastinfer.runtimes.base import Prediction, Row, Runtime

RUNTIMES: dict[str, str] = {
    "sklearn": "fastinfer.runtimes.sklearn:SklearnRuntime",
    "onnx": "fastinfer.runtimes.onnx:OnnxRuntime",
    "xgboost": "fastinfer.runtimes.xgboost:XGBoostRuntime",
    "lightgbm": "fastinfer.runtimes.lightgbm:LightGBMRuntime",
    "python": "fastinfer.runtimes.python:PythonRuntime",
    "torchscript": "fastinfer.runtimes.torchscript:TorchScriptRuntime",
}
assert set(RUNTIMES) == set(RUNTIME_NAMES)

# The framework each runtime needs, and the extra that installs it.
_FRAMEWORKS = {"xgboost": "xgboost", "lightgbm": "lightgbm", "torchscript": "torch"}


class RuntimeUnavailable(RuntimeError):  # noqa: N818
    """The runtime's framework is not installed."""


def create_runtime(
    kind: str,
    output: OutputSpec,
    options: dict[str, Any] | None = None,
    *,
    directory: Path | None = None,
) -> Runtime:
    """A fresh, unloaded runtime; imports the framework only when it is used.

    `options` are the config's `runtime_options`, checked by the runtime that takes them;
    `directory` is the model directory (for runtimes that read more than the artefact).
    """
    target = RUNTIMES.get(kind)
    if target is None:
        raise ValueError(f"unknown runtime {kind!r}; available: {', '.join(RUNTIMES)}")
    try:
        runtime_class: type[Runtime] = pkgutil.resolve_name(target)
    except ModuleNotFoundError as exc:
        framework = _FRAMEWORKS.get(kind)
        if framework is None or exc.name is None or exc.name.split(".")[0] != framework:
            raise
        raise RuntimeUnavailable(
            f"runtime {kind!r} needs the {framework!r} package, which is not installed; "
            f"install it with: pip install {framework} (or the wheel's extra: "
            f"pip install 'fastinfer-<version>-py3-none-any.whl[{framework}]')"
        ) from None
    return runtime_class(output, options or {}, directory=directory)


__all__ = [
    "RUNTIMES",
    "Prediction",
    "Row",
    "Runtime",
    "RuntimeUnavailable",
    "create_runtime",
]
