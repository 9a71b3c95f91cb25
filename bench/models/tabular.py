"""The benchmark's bare scikit-learn tabular pipeline (issue 15), built from a seed.

`Pipeline(ColumnTransformer[OneHotEncoder(pclass, sex, embarked), StandardScaler(age, sibsp,
parch, fare)] → LogisticRegression)` over Titanic-like columns, trained on 2,000 generated rows:
the plain sklearn pipeline people serve, with none of the hand-written preprocessing of
examples/titanic. Generated data keeps the benchmark free of downloads; the same seed gives the
same rows and coefficients (the pickle's bytes, and so its pin, may differ between library
versions: the pin is computed here, for the file written).

    python -m bench.models.tabular OUT_DIR [--seed 0] [--rows 2000]
"""

from __future__ import annotations

import argparse
import hashlib
import io
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import yaml
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

ARTEFACT = "model.joblib"
CATEGORICAL = ("pclass", "sex", "embarked")
NUMERIC = ("age", "sibsp", "parch", "fare")
COLUMNS = (*CATEGORICAL, *NUMERIC)
INPUTS: list[dict[str, Any]] = [
    {"name": "pclass", "type": "integer", "allowed": [1, 2, 3]},
    {"name": "sex", "type": "string", "allowed": ["female", "male"]},
    {"name": "embarked", "type": "string", "allowed": ["C", "Q", "S"]},
    {"name": "age", "type": "number", "minimum": 0, "maximum": 100},
    {"name": "sibsp", "type": "integer", "minimum": 0, "maximum": 10},
    {"name": "parch", "type": "integer", "minimum": 0, "maximum": 10},
    {"name": "fare", "type": "number", "minimum": 0, "maximum": 1000},
]


def tabular_frame(count: int, *, seed: int = 0) -> pd.DataFrame:
    """`count` passengers drawn from `numpy.random.default_rng(seed)`, with a `survived` column
    that follows the published rates by class and sex (noisy, so the model is not trivial)."""
    rng = np.random.default_rng(seed)
    pclass = rng.choice([1, 2, 3], count, p=[0.24, 0.21, 0.55])
    sex = rng.choice(["female", "male"], count, p=[0.35, 0.65])
    embarked = rng.choice(["C", "Q", "S"], count, p=[0.19, 0.09, 0.72])
    age = np.round(np.clip(rng.normal(30, 14, count), 0.42, 80), 1)
    sibsp = np.minimum(rng.poisson(0.5, count), 8)
    parch = np.minimum(rng.poisson(0.4, count), 6)
    fare = np.round(np.exp(rng.normal(2.9, 0.9, count)) * (4 - pclass) / 2, 4)
    score = 1.2 * (sex == "female") - 0.9 * (pclass - 2) - 0.02 * (age - 30) - 0.2 * sibsp
    survived = (score + rng.normal(0, 1, count) > 0).astype(int)
    return pd.DataFrame(
        {
            "pclass": pclass,
            "sex": sex,
            "embarked": embarked,
            "age": age,
            "sibsp": sibsp,
            "parch": parch,
            "fare": fare,
            "survived": survived,
        }
    )


def build_tabular_pipeline(*, seed: int = 0, rows: int = 2000) -> Pipeline:
    """The issue's pipeline, fitted on `rows` generated passengers."""
    frame = tabular_frame(rows, seed=seed)
    preprocess = ColumnTransformer(
        [
            ("categorical", OneHotEncoder(handle_unknown="ignore"), list(CATEGORICAL)),
            ("numeric", StandardScaler(), list(NUMERIC)),
        ]
    )
    model = Pipeline(
        [("preprocess", preprocess), ("classifier", LogisticRegression(max_iter=1000))]
    )
    model.fit(frame[list(COLUMNS)], frame["survived"])
    return model


def tabular_rows(count: int, *, seed: int = 1) -> list[dict[str, Any]]:
    """`count` request rows (another seed than training: unseen passengers), as JSON types."""
    frame = tabular_frame(count, seed=seed)[list(COLUMNS)]
    return [
        {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
        for row in frame.to_dict(orient="records")
    ]


def build_tabular_model_dir(out_dir: Path, *, seed: int = 0, rows: int = 2000) -> Path:
    """Write `model.joblib` and `model.yaml` into `out_dir` (created if needed); return it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = build_tabular_pipeline(seed=seed, rows=rows)
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    data = buffer.getvalue()
    (out_dir / ARTEFACT).write_bytes(data)
    (example,) = tabular_rows(1)
    frame = pd.DataFrame([example], columns=list(COLUMNS))
    label = {0: "died", 1: "survived"}[int(model.predict(frame)[0])]
    config: dict[str, Any] = {
        "name": "tabular",
        "version": "1.0.0",
        "description": (
            "A bare scikit-learn Pipeline(ColumnTransformer[OneHotEncoder, StandardScaler] -> "
            f"LogisticRegression) on generated Titanic-like passengers (seed {seed}, {rows} rows) "
            "for the benchmark."
        ),
        "runtime": "sklearn",
        "artefact": {"path": ARTEFACT, "sha256": hashlib.sha256(data).hexdigest()},
        "inputs": INPUTS,
        "example": example,
        "expected_example_output": label,
        "output": {"kind": "classifier", "labels": {"0": "died", "1": "survived"}},
    }
    text = yaml.safe_dump(config, sort_keys=False, default_flow_style=None, width=100)
    (out_dir / "model.yaml").write_text(text, encoding="utf-8")
    return out_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the benchmark's tabular model directory.")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", type=int, default=2000)
    args = parser.parse_args(argv)
    print(build_tabular_model_dir(args.out_dir, seed=args.seed, rows=args.rows))


if __name__ == "__main__":
    main()
