"""LightGBM boosters in LightGBM's text model format (`booster.save_model("model.txt")`).

The text format is data: loading it runs no Python, so an unpinned file needs no trust. Its
header names the features, the objective (checked against `output.kind` at load) and which
features are categorical; a booster trained from pandas `category` columns also stores their
categories, so those fields accept the category values themselves.

LightGBM parallelises with OpenMP, whose thread pool does not survive a fork: a worker forked
after the parent ran a multi-threaded region hangs in its first prediction. `load` (which runs
before the fork) caps LightGBM at one thread while it parses the trees; predictions run with
`num_threads` (default 1: one server process per core). Rows become a float64 NumPy matrix with
categories encoded as LightGBM's pandas codes, which predicts about 30x faster than a DataFrame.
What this shares with the XGBoost runtime (fields, schema check, matrix) is in `trees.py`.
"""

from __future__ import annotations

import ctypes
import json
import re
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np

from fastinfer.model.spec import InputField
from fastinfer.runtimes.outputs import index_labels
from fastinfer.runtimes.trees import Category, Feature, TreeRuntime, categorical_feature

_TREE_SIZES = re.compile(r"\ntree_sizes=[^\n]*")

_CLASSIFIER_OBJECTIVES = {"binary", "multiclass", "multiclassova"}
# Objectives (as the model file names them) whose prediction is one number per row. A booster
# trained with a custom objective names none and predicts raw scores: "custom" here.
_REGRESSOR_OBJECTIVES = {
    "regression",
    "regression_l1",
    "huber",
    "fair",
    "poisson",
    "quantile",
    "mape",
    "gamma",
    "tweedie",
    "cross_entropy",
    "cross_entropy_lambda",
    "lambdarank",
    "rank_xendcg",
    "custom",
}


@dataclass(frozen=True, slots=True)
class _Header:
    """What the model text says about the booster before its trees."""

    objective: str
    num_class: int
    feature_names: list[str]
    categorical: list[int]  # indices of the categorical features
    pandas_categorical: list[list[Category]] | None
    tree_count: int | None  # how many trees `tree_sizes` lists (None without that line)


class LightGBMRuntime(TreeRuntime):
    name = "lightgbm"

    threads_option = "num_threads"
    option_keys = (threads_option,)
    threads_note = " (0: OpenMP's default)"
    names_note = " (LightGBM writes spaces in feature names as underscores)"

    # The model text is kept from `load` until the trees are parsed: in `load` where LightGBM
    # can be held to one thread, otherwise in `start` (see `_single_threaded_booster`).
    _text = ""
    _booster: Any = None

    @staticmethod
    def feature_name_of(column: str) -> str:
        """LightGBM writes a space in a feature name as `_` (a column "a b" is feature "a_b")."""
        return column.replace(" ", "_")

    def needs_trust(self, data: bytes) -> bool:
        """Pinned like a pickle: LightGBM's text parser is not memory-safe on malformed input
        (a bad `num_leaves=` line crashes the process), so only verified files are parsed.
        A pickle is refused by `load` without being opened."""
        return data[:1] != b"\x80"

    def load(self, data: bytes) -> None:
        """Check the model text and its objective, and parse the trees single-threaded."""
        text = _model_text(data)
        header = _read_header(text)
        width = _output_width(header.objective, self.output.kind, header.num_class)
        if width is not None:
            self._labels = index_labels(width, self.output, "booster")
        self._binary = header.objective == "binary"
        self._features = _features(header)
        self._text = _sequential(text, header)
        self._booster = _single_threaded_booster(self._text)  # None: must wait for `start`

    def start(self) -> None:
        """Parse the trees here when LightGBM cannot be kept to one thread before the fork."""
        if self._booster is None:
            self._booster = _booster(self._text)
        self._text = ""

    def _raw_predict(self, matrix: np.ndarray[Any, Any]) -> Any:
        return self._booster.predict(matrix, num_threads=self._threads)


def _model_text(data: bytes) -> str:
    if not data:
        raise ValueError("the lightgbm artefact is empty")
    if data[:1] == b"\x80":
        raise ValueError(
            "the lightgbm artefact is a Python pickle (joblib/pickle), which the lightgbm "
            "runtime does not load; save the booster as text instead: "
            "booster.save_model('model.txt') (for an LGBMClassifier/LGBMRegressor: "
            "model.booster_.save_model('model.txt'))"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if not text.startswith("tree\n"):
        raise ValueError(
            "the artefact is not a LightGBM text model (it should start with 'tree'); "
            "save it with booster.save_model('model.txt')"
        )
    return text


def _read_header(text: str) -> _Header:
    """The header's `key=value` lines, the training parameters and the pandas categories."""
    values: dict[str, str] = {}
    for line in text[: text.find("\nTree=")].splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key] = value
    if "feature_names" not in values:
        raise ValueError("the LightGBM model text has no feature_names line")
    names = values["feature_names"].split(" ")
    infos = values.get("feature_infos", "").split(" ")
    categorical = _categorical_parameter(text)
    if categorical is None:  # not given as indices: a categorical feature lists its values
        categorical = [
            i for i, info in enumerate(infos) if info and info != "none" and info[0] != "["
        ]
    objective = values.get("objective", "custom").split(" ")[0] or "custom"
    return _Header(
        objective=objective,
        num_class=int(values.get("num_class", "1")),
        feature_names=names,
        categorical=sorted(i for i in categorical if 0 <= i < len(names)),
        pandas_categorical=_pandas_categorical(text),
        tree_count=len(values["tree_sizes"].split()) if "tree_sizes" in values else None,
    )


def _sequential(text: str, header: _Header) -> str:
    """The model text without `tree_sizes`, once the trees it lists are all there.

    With `tree_sizes` LightGBM parses the trees in an OpenMP loop, where a malformed tree ends
    the whole process (std::terminate) instead of raising; without it LightGBM parses them one
    after another and raises LightGBMError. The parse is single-threaded here anyway, so
    nothing is lost, and counting the trees first keeps the truncation check that line gave.
    """
    found = text.count("\nTree=")
    if header.tree_count is not None and found != header.tree_count:
        raise ValueError(
            f"the LightGBM model text is truncated or corrupt: its header lists "
            f"{header.tree_count} trees but {found} follow"
        )
    if "\nend of trees" not in text:
        raise ValueError("the LightGBM model text is truncated: it has no 'end of trees' line")
    return _TREE_SIZES.sub("", text, count=1)


def _categorical_parameter(text: str) -> list[int] | None:
    """`[categorical_feature: 2,5]` from the parameters section (None if absent or by name)."""
    marker = "\n[categorical_feature: "
    start = text.rfind(marker)
    if start < 0:
        return None
    value = text[start + len(marker) : text.find("]", start)].strip()
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        return None


def _pandas_categorical(text: str) -> list[list[Category]] | None:
    """The last line `pandas_categorical:[[...], ...]`, as LightGBM's Python package reads it."""
    last = text.rstrip().rsplit("\n", 1)[-1].strip()
    key = "pandas_categorical:"
    if not last.startswith(key):
        return None
    try:
        parsed = json.loads(last[len(key) :])
    except ValueError:
        return None
    if not isinstance(parsed, list) or not all(isinstance(c, list) and c for c in parsed):
        return None
    return parsed


def _features(header: _Header) -> list[Feature]:
    """One field per booster feature.

    Every field is nullable: LightGBM sends a missing value down each split's learned branch,
    so null is an input the model was built to take, not a gap to refuse.
    """
    lists = header.pandas_categorical or []
    # Trained from pandas, the i-th `category` column holds pandas_categorical[i]. An ordered
    # categorical is stored too but is a numeric feature (its codes), and categorical_feature
    # given by hand can add plain integer columns: when the counts differ the lists cannot be
    # matched to features, and categorical fields take the integer codes LightGBM reads.
    matched: dict[int, list[Category]] = {}
    if len(lists) == len(header.categorical):
        matched = dict(zip(header.categorical, lists, strict=True))
    features = []
    for index, name in enumerate(header.feature_names):
        categories = matched.get(index)
        if categories is not None:
            features.append(categorical_feature(name, categories))
        elif index in header.categorical:
            field = InputField(
                name=name,
                type="integer",
                nullable=True,
                description="category code (a non-negative integer, as LightGBM reads it)",
            )
            features.append(Feature(field, None))
        else:
            features.append(Feature(InputField(name=name, type="number", nullable=True), None))
    return features


def _output_width(objective: str, kind: str, num_class: int) -> int | None:
    """The number of class probabilities per row (None for a regressor), or why not servable."""
    if kind == "classifier":
        if objective == "binary":
            return 2
        if objective in ("multiclass", "multiclassova"):
            return num_class
        raise TypeError(
            f"output kind is classifier but the booster's objective is {objective}, whose "
            "predictions are not class probabilities (objectives served as classifiers: "
            "binary, multiclass, multiclassova)"
        )
    if kind == "regressor":
        if objective in _CLASSIFIER_OBJECTIVES:
            raise TypeError(
                f"output kind is regressor but the booster's objective is {objective}, a "
                "classification objective; use output kind classifier"
            )
        if objective not in _REGRESSOR_OBJECTIVES:
            raise TypeError(f"the booster's objective {objective} is not one fastinfer serves")
        return None
    raise TypeError(f"the lightgbm runtime answers output kind classifier or regressor, not {kind}")


def _booster(text: str) -> Any:
    try:
        return lgb.Booster(model_str=text)
    except lgb.basic.LightGBMError as exc:
        raise ValueError(f"the LightGBM model text is not valid: {exc}") from None


def _single_threaded_booster(text: str) -> Any:
    """The booster, parsed with LightGBM capped at one thread; None where it cannot be capped.

    `LGBM_SetMaxThreads` (LightGBM >= 4.2) is in the C API but not the Python package; older
    releases lack it, and their booster is built in `start`, in the serving process.
    """
    library: Any = getattr(lgb.basic, "_LIB", None)
    if not hasattr(library, "LGBM_SetMaxThreads") or not hasattr(library, "LGBM_GetMaxThreads"):
        return None
    previous = ctypes.c_int(0)
    library.LGBM_GetMaxThreads(ctypes.byref(previous))
    library.LGBM_SetMaxThreads(ctypes.c_int(1))
    try:
        return _booster(text)
    finally:
        library.LGBM_SetMaxThreads(previous)
