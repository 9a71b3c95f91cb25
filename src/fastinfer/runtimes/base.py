"""The runtime contract: load an artefact once, then predict batches of rows.

A runtime knows one framework and nothing about HTTP, queues or batching. Rows arrive validated,
as dicts holding every schema column (missing values are None), and each row gets one prediction.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fastinfer.model.spec import InputField, OutputSpec

Row = dict[str, Any]
Prediction = dict[str, Any]


class Runtime(ABC):
    """A loaded model. `predict` may be called from worker threads, one batch at a time."""

    name: str = "base"
    option_keys: tuple[str, ...] = ()  # the runtime_options this runtime accepts
    # Whether `bind_schema`, `prepare` and `predict` may run before the fork (no `start` needed,
    # nothing that must not cross a fork): a supervisor then builds the schema, the faster path
    # and the self-test once, and its workers share them instead of each building its own copy.
    builds_before_fork: bool = False

    def __init__(
        self,
        output: OutputSpec,
        options: Mapping[str, Any] | None = None,
        *,
        directory: Path | None = None,
    ) -> None:
        self.output = output
        self.options = dict(options or {})
        self.directory = directory  # the model directory, for runtimes that read more files
        unknown = sorted(set(self.options) - set(self.option_keys))
        if unknown:
            known = ", ".join(self.option_keys) or "none"
            raise ValueError(
                f"unknown {self.name} runtime option(s): {', '.join(unknown)}; known: {known}"
            )

    def needs_trust(self, data: bytes) -> bool:
        """Whether deserialising `data` can run arbitrary code (a pickle does; ONNX does not).

        Such artefacts load only when pinned by sha256 or explicitly trusted.
        """
        return True

    @abstractmethod
    def load(self, data: bytes) -> None:
        """Deserialise the (already verified) artefact bytes (empty when there is no artefact)."""

    def start(self) -> None:  # noqa: B027 - an optional hook
        """Acquire what must not cross a fork (thread pools, sessions), in the serving process.

        `load` runs before the server forks its workers, so that they share one copy of the
        model; anything that owns threads belongs here instead.
        """

    def bind_schema(self, fields: list[InputField]) -> None:  # noqa: B027 - an optional hook
        """Learn the row schema (once, before any predict), e.g. to convert columns by type."""

    def prepare(self, examples: list[Row], columns: list[str]) -> None:  # noqa: B027 - optional
        """Build (and check) a faster path, once, after `bind_schema` and before the self-test;
        `examples` are the config's example rows, validated (none when it has none)."""

    def describe(self) -> dict[str, Any]:
        """What the runtime reports about itself in model metadata (e.g. a compiled path)."""
        return {}

    @abstractmethod
    def predict(self, rows: list[Row], columns: list[str]) -> list[Prediction]:
        """One prediction per row, in order."""

    def input_dtypes(self, fields: list[InputField]) -> dict[str, np.dtype[Any]]:
        """The dtype the model reads each field's values as, where it is narrower than the row
        schema's own (float64 numbers, int64 integers): a float32 graph input, say. The schema
        then refuses what that dtype cannot hold (3.5e38 for float32) with a 422, instead of
        the model reading inf. Called once started, before `bind_schema`."""
        return {}

    def derived_inputs(self) -> list[InputField] | None:
        """The input schema the artefact itself declares, if it declares one."""
        return None

    def output_schemas(self) -> dict[str, dict[str, Any]] | None:
        """JSON schema of each named output, for `kind: tensor` responses in OpenAPI."""
        return None

    def output_labels(self) -> list[str] | None:
        """The labels a classifier can answer, once loaded (for typed responses)."""
        return None


def whole_number_option(
    options: Mapping[str, Any], key: str, *, default: int, minimum: int, note: str = ""
) -> int:
    """A runtime option that must be an integer >= minimum (thread counts), checked at load
    so a typo in model.yaml fails with the option's name rather than deep in a framework."""
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(
            f"runtime option {key} must be a whole number >= {minimum}{note}; got {value!r}"
        )
    return value
