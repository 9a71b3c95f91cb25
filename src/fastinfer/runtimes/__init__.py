"""Framework runtimes, looked up by the `runtime` name in a model's config."""

from __future__ import annotations

from fastinfer.modelspec import OutputSpec
from fastinfer.runtimes.base import Prediction, Row, Runtime


def create_runtime(kind: str, output: OutputSpec) -> Runtime:
    """A fresh, unloaded runtime; imports the framework only when it is used."""
    if kind == "sklearn":
        from fastinfer.runtimes.sklearn import SklearnRuntime

        return SklearnRuntime(output)
    raise ValueError(f"unknown runtime {kind!r}; available: sklearn")


__all__ = ["Prediction", "Row", "Runtime", "create_runtime"]
