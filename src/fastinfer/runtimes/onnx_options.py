"""The onnx runtime's `runtime_options`, each checked when the runtime is created so that a typo
in model.yaml fails the load with the option's name.

Sessions default to one thread each way: fastinfer runs one server process per core.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import onnxruntime as ort

from fastinfer.runtimes.base import whole_number_option

OPTION_KEYS = (
    "intra_op_threads",
    "inter_op_threads",
    "graph_optimization_level",
    "execution_mode",
    "probabilities_output",
    "label_output",
    "input_columns",
)

_OPTIMIZATION_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "layout": ort.GraphOptimizationLevel.ORT_ENABLE_LAYOUT,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
_EXECUTION_MODES = {
    "sequential": ort.ExecutionMode.ORT_SEQUENTIAL,
    "parallel": ort.ExecutionMode.ORT_PARALLEL,
}


def session_options(options: Mapping[str, Any]) -> ort.SessionOptions:
    """SessionOptions from `runtime_options`, each value checked so typos fail at load."""
    session = ort.SessionOptions()
    session.intra_op_num_threads = _thread_count(options, "intra_op_threads")
    session.inter_op_num_threads = _thread_count(options, "inter_op_threads")
    level = options.get("graph_optimization_level", "all")
    if level not in _OPTIMIZATION_LEVELS:
        raise ValueError(
            f"runtime option graph_optimization_level must be one of "
            f"{', '.join(_OPTIMIZATION_LEVELS)} (got {level!r})"
        )
    session.graph_optimization_level = _OPTIMIZATION_LEVELS[level]
    mode = options.get("execution_mode", "sequential")
    if mode not in _EXECUTION_MODES:
        raise ValueError(
            f"runtime option execution_mode must be one of {', '.join(_EXECUTION_MODES)} "
            f"(got {mode!r})"
        )
    if mode == "parallel" and session.inter_op_num_threads == 1:
        # onnxruntime would quietly fall back to sequential: say so instead.
        raise ValueError(
            "runtime option execution_mode parallel needs inter_op_threads >= 2 "
            "(or 0: onnxruntime decides)"
        )
    session.execution_mode = _EXECUTION_MODES[mode]
    return session


def _thread_count(options: Mapping[str, Any], key: str) -> int:
    return whole_number_option(options, key, default=1, minimum=0, note=" (0: onnxruntime decides)")


def input_columns(options: Mapping[str, Any]) -> dict[str, list[str]]:
    """Runtime option input_columns: graph input → the scalar fields stacked into it."""
    value = options.get("input_columns", {})
    if not isinstance(value, dict) or not all(
        isinstance(columns, list) and columns and all(isinstance(c, str) and c for c in columns)
        for columns in value.values()
    ):
        raise ValueError(
            "runtime option input_columns must map a graph input to the names of the fields "
            f"stacked into it, e.g. {{float_input: [age, income]}}; got {value!r}"
        )
    return {str(name): list(columns) for name, columns in value.items()}
