"""The compiled operations: the rows' columns → the matrix a pipeline's final estimator reads.

Each operation is the one scikit-learn applies, in its order and dtype (float64): a scaler's
`(x - mean_) / scale_`, the imputer's fill, one-hot columns set to 1.0 in a zeroed C-ordered
matrix (as `np.hstack` assembles it). `compile.py` builds a `Plan` of these from the fitted
estimators; `Features` runs it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from fastinfer.runtimes.base import Row

Float64Array = npt.NDArray[np.float64]
Frame = Callable[[Sequence[Row]], Any]  # rows → the DataFrame the pipeline reads
IGNORED = -1  # a category that sets no one-hot column
REFUSED = -2  # a value the pipeline refuses (handle_unknown="error"): the pipeline answers
_LOOP_ROWS = 8  # up to this many rows, one-hot cells are set one by one (cheaper than indexing)


class NotCompilable(Exception):  # noqa: N818 - a reason, not a failure
    """Why a fitted estimator has no compiled path (the message is shown in model metadata)."""


@dataclass(frozen=True, slots=True)
class Affine:
    """One elementwise step on a block of float64 columns, as the scikit-learn class does it."""

    kind: str  # "fill" (SimpleImputer), "standard", "minmax"
    first: Float64Array | None = None  # fill values / mean_ / scale_ (MinMax: scale_)
    second: Float64Array | None = None  # scale_ / min_
    clip: tuple[float, float] | None = None

    def apply(self, block: Float64Array) -> Float64Array:
        if self.kind == "fill":
            assert self.first is not None
            missing = np.isnan(block)
            if missing.any():
                block = np.where(missing, self.first, block)
            return block
        if self.kind == "standard":  # StandardScaler.transform: X -= mean_; X /= scale_
            if self.first is not None:
                block -= self.first
            if self.second is not None:
                block /= self.second
            return block
        assert self.first is not None and self.second is not None  # MinMaxScaler.transform
        block *= self.first
        block += self.second
        if self.clip is not None:
            np.clip(block, self.clip[0], self.clip[1], out=block)
        return block


@dataclass(frozen=True, slots=True)
class Numbers:
    """Input columns read as float64, through elementwise steps, into output columns."""

    columns: tuple[str, ...]
    start: int
    steps: tuple[Affine, ...]


@dataclass(frozen=True, slots=True)
class OneHot:
    """One encoded input column: value → its output column (absolute), `IGNORED` or
    `REFUSED`; `missing` is what None (NaN in the pipeline's frame) maps to."""

    column: str
    table: dict[Any, int]
    missing: int
    unknown: int


@dataclass(slots=True)
class Plan:
    """What the walk found: the blocks in output order, the width, the matrix steps."""

    columns: list[str]
    blocks: list[Numbers | OneHot] = field(default_factory=list)
    width: int = 0
    matrix_steps: list[Affine] = field(default_factory=list)
    numbers: dict[str, tuple[float, float]] = field(default_factory=dict)  # column → centre, spread
    categories: dict[str, list[Any]] = field(default_factory=dict)  # column → known values
    prefix: list[Any] = field(default_factory=list)  # steps run as they are, on the frame
    why_prefix: str = ""  # what kept them from being compiled
    # The first of them reads the rows themselves (its `transform_rows`), with no DataFrame.
    rows_step: bool = False

    def describe(self) -> str:
        if self.prefix:
            names = ", ".join(type(step).__name__ for step in self.prefix)
            reads = " (the first reading the rows: transform_rows)" if self.rows_step else ""
            return (
                f"{names} run as they are ({self.why_prefix}){reads}, then "
                f"{len(self.matrix_steps)} elementwise step(s) and the model"
            )
        encoded = sum(isinstance(b, OneHot) for b in self.blocks)
        numeric = sum(len(b.columns) for b in self.blocks if isinstance(b, Numbers))
        return f"{encoded} encoded and {numeric} numeric column(s) → {self.width} features"


class Features:
    """A plan run on rows: the float64 matrix the final estimator would see, or None where
    the pipeline must answer itself (a value it refuses, a matrix that is not finite)."""

    def __init__(self, plan: Plan, frame: Frame | None = None) -> None:
        self.plan = plan
        self._prefix = plan.prefix
        self._frame = frame
        self._blocks = plan.blocks
        self._width = plan.width
        self._matrix_steps = plan.matrix_steps

    def __call__(self, rows: Sequence[Row]) -> Float64Array | None:
        if self._prefix:
            return self._prefixed(rows)
        count = len(rows)
        matrix = np.zeros((count, self._width), dtype=np.float64)
        hot: list[list[int]] = []  # each encoded column's output column per row
        for block in self._blocks:
            if isinstance(block, OneHot):
                name, table, unknown = block.column, block.table, block.unknown
                missing = block.missing
                columns = [  # NaN (the one value unequal to itself) is missing too, as in pandas
                    missing if (v := row.get(name)) is None or v != v else table.get(v, unknown)  # noqa: PLR0124
                    for row in rows
                ]
                if REFUSED in columns:
                    return None
                hot.append(columns)
                continue
            values = float_block(rows, block.columns)
            for step in block.steps:
                values = step.apply(values)
            matrix[:, block.start : block.start + len(block.columns)] = values
        if count <= _LOOP_ROWS:
            for columns in hot:
                for index, column in enumerate(columns):
                    if column >= 0:
                        matrix[index, column] = 1.0
        elif hot:
            where = np.array(hot, dtype=np.intp)  # (encoded columns, rows)
            row_index = np.broadcast_to(np.arange(count), where.shape)
            set_ = where >= 0
            matrix[row_index[set_], where[set_]] = 1.0
        for step in self._matrix_steps:
            matrix = step.apply(matrix)
        if not np.isfinite(matrix).all():
            return None  # the models compiled refuse NaN and infinity: let the pipeline say so
        return matrix

    def _prefixed(self, rows: Sequence[Row]) -> Float64Array | None:
        """The uncompiled steps on the frame, as the pipeline runs them, then the compiled
        elementwise steps; None for anything but a dense finite float64 matrix."""
        assert self._frame is not None
        steps = self._prefix
        if self.plan.rows_step:
            try:
                features = steps[0].transform_rows(rows)
            except Exception:  # the pipeline answers (or refuses) the batch itself
                return None
            steps = steps[1:]
        else:
            features = self._frame(rows)
        for step in steps:
            features = step.transform(features)
        if not isinstance(features, np.ndarray) or features.dtype != np.float64:
            return None
        if features.ndim != 2 or features.shape[1] != self._width:
            return None
        for step in self._matrix_steps:
            features = step.apply(features.copy() if step.kind != "fill" else features)
        if not np.isfinite(features).all():
            return None
        matrix: Float64Array = features
        return matrix


def float_block(rows: Sequence[Row], columns: tuple[str, ...]) -> Float64Array:
    """Columns of rows → an (n, k) float64 array, None → NaN (as the frame gives them).

    Built column by column and transposed: NumPy converts a list of one column's values (ints
    and floats alike) about three times faster than a list of mixed rows.
    """
    values = [[row.get(name) for row in rows] for name in columns]
    try:
        return np.array(values, dtype=np.float64).T
    except TypeError:
        return np.array(
            [[np.nan if v is None else v for v in column] for column in values], dtype=np.float64
        ).T
