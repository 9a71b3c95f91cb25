"""An ONNX classifier's own label output, and the probability column each label names.

A skl2onnx classifier (and any graph with an ArgMax) outputs the label the model decides beside
the probabilities; that label is served as it is, never re-derived from the probabilities (an
SVC's label comes from its decision function, not from its Platt-scaled probabilities).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fastinfer.model.spec import OutputSpec
from fastinfer.runtimes.outputs import ClassIndex

_INTEGER_TENSORS = {
    f"tensor({kind})"
    for kind in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
}
_LABEL_TENSORS = _INTEGER_TENSORS | {"tensor(string)"}


def choose_label_output(outputs: Sequence[Any], probabilities: Any, named: str | None) -> Any:
    """The output holding each row's label: `named` (the runtime option `label_output`), else
    the first integer or string tensor of shape [N] or [N,1]; None when the graph has none."""
    candidates = [out for out in outputs if out.name != probabilities.name]
    if named is not None:
        for out in candidates:
            if out.name == named:
                if not _is_label_tensor(out):
                    raise TypeError(
                        f"output {out.name!r} is a {out.type} of shape {list(out.shape)}; a "
                        "label output must be an integer or string tensor of shape [N] or [N,1]"
                    )
                return out
        raise ValueError(
            f"label_output {named!r} is not an output of the graph besides the probabilities "
            f"(outputs: {', '.join(o.name for o in outputs)})"
        )
    return next((out for out in candidates if _is_label_tensor(out)), None)


def _is_label_tensor(out: Any) -> bool:
    shape = list(out.shape)
    rank_ok = len(shape) == 1 or (len(shape) == 2 and shape[1] in (1, None))
    return out.type in _LABEL_TENSORS and rank_ok


def label_columns(
    values: Any,
    name: str,
    column_labels: list[str],
    class_keys: list[Any] | None,
    output: OutputSpec,
) -> list[int]:
    """Each row's probability column, from the label output's `values`.

    With ZipMap probabilities (`class_keys`, the maps' keys: the class values) a label is its
    class's column. With a plain [N,K] tensor, an integer label is the column index (as an
    ArgMax gives, and as a skl2onnx classifier of classes 0…K-1 does); a string label is matched
    to the column labels through `output.labels`, which then name the columns by class.
    """
    flat = np.asarray(values).reshape(-1)
    source = f"the label output {name!r}"
    if class_keys is not None:
        return ClassIndex(class_keys, source).columns(flat, len(flat))
    if flat.dtype.kind in "iu":
        return ClassIndex(range(len(column_labels)), source).columns(flat, len(flat))
    mapping = output.labels or {}
    shown = [mapping.get(str(v), str(v)) for v in flat.tolist()]
    try:
        return ClassIndex(column_labels, source).columns(shown, len(flat))
    except ValueError as exc:
        raise ValueError(
            f"{exc}; the probabilities are a plain tensor, so name its columns by class in "
            'output.labels ({"0": first class, …}, in the estimator\'s classes_ order), or keep '
            "skl2onnx's ZipMap output, whose probabilities are keyed by class"
        ) from None
