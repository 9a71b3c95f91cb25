"""Framework runtimes, looked up by the `runtime` name in a model's config."""

from __future__ import annotations

from typing import Any

from fastinfer.modelspec import OutputSpec
from fastinfer.runtimes.base import Prediction, Row, Runtime

RUNTIMES = ("sklearn", "onnx")


def create_runtime(kind: str, output: OutputSpec, options: dict[str, Any] | None = None) -> Runtime:
    """A fresh, unloaded runtime; imports the framework only when it is used.

    `options` are the config's `runtime_options`, checked by the runtime that takes them.
    """
    if kind == "sklearn":
        from fastinfer.runtimes.sklearn import SklearnRuntime

        if options:
            raise ValueError(
                f"runtime sklearn takes no runtime_options (got {', '.join(sorted(options))})"
            )
        return SklearnRuntime(output)
    if kind == "onnx":
        from fastinfer.runtimes.onnx import OnnxRuntime

        return OnnxRuntime(output, options)
    raise ValueError(f"unknown runtime {kind!r}; available: {', '.join(RUNTIMES)}")


__all__ = ["RUNTIMES", "Prediction", "Row", "Runtime", "create_runtime"]
