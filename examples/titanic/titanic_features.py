"""Feature engineering for the Titanic example, shared by training and serving.

`train.py` pickles a pipeline whose first step is `TitanicFeatures`. Pickle stores the class by
reference (`titanic_features.TitanicFeatures`), so the server imports this very module (listed in
`code_paths` of `model.yaml`) when it loads the artefact: training and serving run the same code, so
they cannot drift apart (no train/serve skew). Keep the module name unique (its folder goes on
`sys.path`) and keep the class importable from it.

Requests arrive with the raw Kaggle columns, one row or many, with values that may be missing (None,
NaN, pd.NA or an empty string), object or pandas `str` dtype, and integers that came through JSON as
floats; everything here copes with those instead of relying on the caller to clean up.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from collections.abc import Iterable
from typing import Any, Self

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

RAW_COLUMNS = (
    "PassengerId",
    "Pclass",
    "Name",
    "Sex",
    "Age",
    "SibSp",
    "Parch",
    "Ticket",
    "Fare",
    "Cabin",
    "Embarked",
)
# The columns the features need. The nullable ones may also be left out of the frame altogether;
# PassengerId and Ticket are accepted but unused (identifiers, not signal).
REQUIRED_COLUMNS = ("Pclass", "Name", "Sex", "SibSp", "Parch", "Fare")
OPTIONAL_COLUMNS = ("Age", "Cabin", "Embarked")

CATEGORICAL_FEATURES = ("Title", "Deck", "Sex", "Embarked")
NUMERIC_FEATURES = ("Pclass", "Age", "Fare", "FamilySize", "IsAlone", "HasCabin")
FEATURES = (*CATEGORICAL_FEATURES, *NUMERIC_FEATURES)

TITLES = ("Mr", "Mrs", "Miss", "Master", "Rare")
# French forms map to their English equivalents; every other title (Dr, Rev, Col, ...) is "Rare".
_TITLE_ALIASES = {
    "Mr": "Mr",
    "Mrs": "Mrs",
    "Miss": "Miss",
    "Master": "Master",
    "Mlle": "Miss",
    "Ms": "Miss",
    "Mme": "Mrs",
}
# "Braund, Mr. Owen Harris" -> "Mr"; "Rothes, the Countess. of (...)" -> "the Countess".
_TITLE_PATTERN = r",\s*((?:the\s+)?[A-Za-z]+)\s*\."
_DECKS = frozenset("ABCDEFGT")
UNKNOWN_DECK = "U"

# Fallbacks for a training set that lacks a value entirely (never hit with the shipped data).
_DEFAULT_AGE = 28.0  # median age of the Kaggle training set
_DEFAULT_FARE = 14.4542  # median fare of the Kaggle training set
_DEFAULT_PCLASS = 3.0
_DEFAULT_SEX = "male"
_DEFAULT_EMBARKED = "S"
_DEFAULT_TITLE = {"male": "Mr", "female": "Miss"}

_title_regex = re.compile(_TITLE_PATTERN)


def _is_missing(value: object) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float | np.floating) and math.isnan(value)


def _string(value: object) -> str | None:
    """A stripped string; None, NaN, pd.NA, "" and "  " all read as missing."""
    if _is_missing(value):
        return None
    text = str(value).strip()
    return text or None


def _number(value: object) -> float | None:
    """A float from a number or a numeric string; missing, unparsable or infinite reads as None."""
    if _is_missing(value):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _title(name: str | None) -> str | None:
    """Title from Name: None when there is none to read, "Rare" for an unusual one (Dr, Rev...)."""
    match = _title_regex.search(name) if name else None
    return _TITLE_ALIASES.get(match.group(1), "Rare") if match else None


def _median(values: Iterable[float | None], default: float) -> float:
    present = [v for v in values if v is not None]
    return float(statistics.median(present)) if present else default


def _mode(values: Iterable[Any], default: Any) -> Any:
    """Most frequent non-missing value, ties broken by sort order so the fit is deterministic."""
    counts = Counter(v for v in values if v is not None)
    if not counts:
        return default
    best = max(counts.values())
    return min(v for v, c in counts.items() if c == best)


def _as_frame(data: Any, names: NDArray[np.object_] | None) -> pd.DataFrame:
    """A DataFrame as given; a bare 2-D array is read in the column order seen in fit."""
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, np.ndarray) and data.ndim == 2 and names is not None:
        if data.shape[1] != len(names):
            raise ValueError(
                f"TitanicFeatures: got {data.shape[1]} unnamed columns, fitted on {len(names)}"
            )
        return pd.DataFrame(data, columns=list(names))
    return pd.DataFrame(data)


class _Rows:
    """The raw columns parsed value by value.

    Plain Python over column lists: a request holds one to a few hundred rows, where per-column
    pandas operations cost milliseconds in overhead and this costs microseconds.
    """

    def __init__(self, data: Any, names: NDArray[np.object_] | None = None) -> None:
        frame = _as_frame(data, names)
        self.columns = [str(c) for c in frame.columns]
        missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"TitanicFeatures: missing input column(s): {', '.join(missing)}")
        self.index = frame.index

        def column(name: str) -> list[Any]:
            return frame[name].tolist() if name in frame.columns else [None] * len(frame)

        self.pclass = [None if (n := _number(v)) is None else float(round(n))
                       for v in column("Pclass")]  # fmt: skip
        self.sex = [None if (s := _string(v)) is None else s.lower() for v in column("Sex")]
        self.title = [_title(_string(v)) for v in column("Name")]
        self.age = [_number(v) for v in column("Age")]
        self.sibsp = [max(_number(v) or 0.0, 0.0) for v in column("SibSp")]
        self.parch = [max(_number(v) or 0.0, 0.0) for v in column("Parch")]
        self.fare = [_number(v) for v in column("Fare")]
        self.cabin = [_string(v) for v in column("Cabin")]
        self.embarked = [None if (s := _string(v)) is None else s.upper()
                         for v in column("Embarked")]  # fmt: skip


class TitanicFeatures(BaseEstimator, TransformerMixin):  # type: ignore[misc]
    """Raw Kaggle passenger columns -> the engineered features the classifier sees.

    Output columns: Title (Mr/Mrs/Miss/Master/Rare; a name without a readable title gets the
    commonest title of its sex seen in fit), Deck (first letter of Cabin, "U" if none), Sex,
    Embarked (missing -> the most frequent port seen in fit), Pclass, Age (missing -> the median
    age of the passenger's title seen in fit, because Master and Miss carry age), Fare (log1p;
    missing -> the class median seen in fit), FamilySize (SibSp + Parch + 1), IsAlone and HasCabin.
    Categorical columns come out as object dtype and numeric ones as float64, whatever dtypes came
    in, so the encoder downstream sees the same types in training and serving.
    """

    def fit(self, X: Any, y: ArrayLike | None = None) -> Self:  # noqa: N803
        """Learn the imputation values from the training rows."""
        rows = _Rows(X)
        self.sex_mode_: str = str(_mode(rows.sex, _DEFAULT_SEX))
        sexes = [s or self.sex_mode_ for s in rows.sex]
        self.title_by_sex_: dict[str, str] = {
            sex: str(
                _mode((t for t, s in zip(rows.title, sexes, strict=True) if s == sex), default)
            )
            for sex, default in _DEFAULT_TITLE.items()
        }
        titles = self._fill_titles(rows.title, sexes)
        self.age_median_: float = _median(rows.age, _DEFAULT_AGE)
        self.age_by_title_: dict[str, float] = {
            title: _median(
                (a for a, t in zip(rows.age, titles, strict=True) if t == title), self.age_median_
            )
            for title in TITLES
        }
        self.pclass_mode_: float = float(_mode(rows.pclass, _DEFAULT_PCLASS))
        self.fare_median_: float = _median(rows.fare, _DEFAULT_FARE)
        self.fare_by_class_: dict[float, float] = {
            cls: _median(
                (f for f, c in zip(rows.fare, rows.pclass, strict=True) if c == cls),
                self.fare_median_,
            )
            for cls in (1.0, 2.0, 3.0)
        }
        self.embarked_mode_: str = str(_mode(rows.embarked, _DEFAULT_EMBARKED))
        # sklearn's contract for frame input; a Pipeline reports its first step's names, which is
        # how a server can tell that this artefact wants a DataFrame with these columns.
        self.feature_names_in_: NDArray[np.object_] = np.asarray(rows.columns, dtype=object)
        self.n_features_in_: int = len(rows.columns)
        return self

    def transform(self, X: Any) -> pd.DataFrame:  # noqa: N803
        """Engineer the features for any number of rows (a single one is fine)."""
        check_is_fitted(self, "age_by_title_")
        rows = _Rows(X, self.feature_names_in_)
        sexes = [s or self.sex_mode_ for s in rows.sex]
        titles = self._fill_titles(rows.title, sexes)
        pclass = [self.pclass_mode_ if c is None else c for c in rows.pclass]
        ages = [
            self.age_by_title_.get(t, self.age_median_) if a is None else a
            for a, t in zip(rows.age, titles, strict=True)
        ]
        fares = [
            math.log1p(max(self.fare_by_class_.get(c, self.fare_median_) if f is None else f, 0.0))
            for f, c in zip(rows.fare, pclass, strict=True)
        ]
        family = [s + p + 1.0 for s, p in zip(rows.sibsp, rows.parch, strict=True)]
        decks = [c[0].upper() if c and c[0].upper() in _DECKS else UNKNOWN_DECK for c in rows.cabin]
        columns: dict[str, list[Any]] = {
            "Title": titles,
            "Deck": decks,
            "Sex": sexes,
            "Embarked": [e or self.embarked_mode_ for e in rows.embarked],
            "Pclass": pclass,
            "Age": ages,
            "Fare": fares,
            "FamilySize": family,
            "IsAlone": [float(f == 1.0) for f in family],
            "HasCabin": [float(c is not None) for c in rows.cabin],
        }
        out = pd.DataFrame(
            {
                name: pd.Series(values, dtype=object if name in CATEGORICAL_FEATURES else "float64")
                for name, values in columns.items()
            }
        )
        out.index = rows.index
        return out

    def get_feature_names_out(self, input_features: ArrayLike | None = None) -> NDArray[np.object_]:
        """The output column names, for `ColumnTransformer` and model inspection."""
        return np.asarray(FEATURES, dtype=object)

    def _fill_titles(self, parsed: list[str | None], sexes: list[str]) -> list[str]:
        return [t or self.title_by_sex_.get(s, "Rare") for t, s in zip(parsed, sexes, strict=True)]
