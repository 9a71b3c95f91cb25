"""Train the car evaluation example on the full UCI attribute grid, labelled by a rule set.

The UCI Car Evaluation data (Bohanec and Rajkovic, 1988) is every combination of six attributes,
4 * 4 * 4 * 3 * 3 * 3 = 1,728 cars, labelled by a hierarchical expert model:

    CAR = f(PRICE(buying, maint), TECH(COMFORT(doors, persons, lug_boot), safety))

No data set can be downloaded where this runs, so `label_car` re-creates such a model with rules
of the same shape (they are ours, not the original tables):

- PRICE: buying and maint each score vhigh 0, high 1, med 2, low 3. A sum of at most 1 (buying
  vhigh with maint vhigh or high, or buying high with maint vhigh) is unaffordable -> unacc.
  Otherwise PRICE gives 0 points (sum 2-3), 2 points (sum 4) or 4 points (sum 5-6).
- COMFORT: a car for two persons is unacc whatever else it offers. Otherwise it scores lug_boot
  (small 0, med 1, big 2) + 1 for three or more doors + 1 for room for more than four persons.
- TECH: low safety is unacc. Otherwise TECH is COMFORT + 2 points for high safety.
- CAR: PRICE + TECH points: below 3 unacc, 3-6 acc, 7 good, 8 or more vgood, except that a car
  with only medium safety is never vgood (it stays good).

Each attribute's values are listed worst first, and a better value never makes a car worse.
Persons = 2 or safety = low always means unacc, as in the UCI data, and the classes come out
1,212 unacc / 387 acc / 66 good / 63 vgood (70.1% / 22.4% / 3.8% / 3.6%; UCI has 70.0% / 22.2% /
4.0% / 3.8%). The script one-hot encodes the six attributes, fits gradient boosting to the whole
grid, prints the training and cross-validated accuracy and writes `model.joblib` (zlib-compressed:
about a quarter of the pickle's 1 MB), `reference.json` (training statistics for drift checks)
and `model.yaml` beside itself, or with `--out DIR` into DIR.

Reproducibility: these files are committed, and the committed `model.joblib` is the source of
truth; the sha256 pin in the committed `model.yaml` is the digest of that file. Runs on one machine
with one set of libraries write byte-identical files (zlib compresses the same bytes the same way),
but the fitted trees' values come from floating-point code whose last bits can depend on the CPU
and on the numpy/scikit-learn build, so a retrain elsewhere may change the pin. It predicts the
same labels: tests/test_examples.py retrains into a temporary folder and compares its predictions
on the whole grid with the committed model's. `make retrain` re-creates the committed files; run
it (and commit the result) only when the training changes.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from fastinfer.model.spec import (
    CONFIG_FILENAME,
    ArtefactSpec,
    BatchingSpec,
    InputField,
    ModelConfig,
    OutputSpec,
    dump_config,
)
from fastinfer.monitoring.reference import reference_statistics, write_reference

HERE = Path(__file__).resolve().parent
SEED = 1988  # the year of the original model
MODEL_FILENAME = "model.joblib"
# 800 trees pickle to about 1 MB; zlib at level 3 makes it about 240 kB, deterministically.
COMPRESS = ("zlib", 3)
REFERENCE_FILENAME = "reference.json"  # training-data statistics, for drift checks
# reference.json's `created_at`: fixed rather than the clock's time, so the file is deterministic.
REFERENCE_CREATED_AT = datetime(2026, 12, 6, tzinfo=UTC)

# Attribute values in UCI order, which is worst first for every attribute.
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "buying": ("vhigh", "high", "med", "low"),
    "maint": ("vhigh", "high", "med", "low"),
    "doors": ("2", "3", "4", "5more"),
    "persons": ("2", "4", "more"),
    "lug_boot": ("small", "med", "big"),
    "safety": ("low", "med", "high"),
}
CLASSES = ("unacc", "acc", "good", "vgood")
DESCRIPTIONS = {
    "buying": "Buying price: vhigh, high, med or low.",
    "maint": "Price of maintenance: vhigh, high, med or low.",
    "doors": "Number of doors: 2, 3, 4 or 5more.",
    "persons": "Capacity in persons to carry: 2, 4 or more.",
    "lug_boot": "Size of the luggage boot: small, med or big.",
    "safety": "Estimated safety of the car: low, med or high.",
}
EXAMPLE = {  # a family car: acc
    "buying": "high",
    "maint": "med",
    "doors": "4",
    "persons": "4",
    "lug_boot": "med",
    "safety": "high",
}

_COST_SCORE = {"vhigh": 0, "high": 1, "med": 2, "low": 3}
_LUG_BOOT_POINTS = {"small": 0, "med": 1, "big": 2}


def price_points(buying: str, maint: str) -> int | None:
    """PRICE: None when unaffordable, else 0 (high), 2 (med) or 4 (low)."""
    total = _COST_SCORE[buying] + _COST_SCORE[maint]
    if total <= 1:
        return None
    if total <= 3:
        return 0
    return 2 if total == 4 else 4


def comfort_points(doors: str, persons: str, lug_boot: str) -> int | None:
    """COMFORT: None for a two-seater, else 0-4 points."""
    if persons == "2":
        return None
    return _LUG_BOOT_POINTS[lug_boot] + (doors != "2") + (persons == "more")


def tech_points(comfort: int | None, safety: str) -> int | None:
    """TECH: None when comfort or safety is unacceptable, else 0-6 points."""
    if comfort is None or safety == "low":
        return None
    return comfort + (2 if safety == "high" else 0)


def label_car(row: Mapping[str, str]) -> str:
    """The class of one car (a mapping with the six attributes), by the rules above."""
    for name, values in ATTRIBUTES.items():
        if row[name] not in values:
            raise ValueError(f"{name}={row[name]!r} is not one of {', '.join(values)}")
    price = price_points(row["buying"], row["maint"])
    tech = tech_points(comfort_points(row["doors"], row["persons"], row["lug_boot"]), row["safety"])
    if price is None or tech is None:
        return "unacc"
    score = price + tech
    if score < 3:
        return "unacc"
    if score <= 6:
        return "acc"
    if score == 7 or row["safety"] != "high":
        return "good"
    return "vgood"


def build_grid() -> pd.DataFrame:
    """All 1,728 attribute combinations, in UCI order, as object-dtype string columns."""
    rows = list(itertools.product(*ATTRIBUTES.values()))
    return pd.DataFrame(np.array(rows, dtype=object), columns=list(ATTRIBUTES), dtype=object)


def labelled_grid() -> pd.DataFrame:
    """The grid with its `class` column."""
    grid = build_grid()
    labels = [
        label_car(dict(zip(ATTRIBUTES, values, strict=True)))
        for values in grid.itertuples(index=False)
    ]
    grid["class"] = pd.Series(labels, dtype=object)
    return grid


def build_pipeline() -> Pipeline:
    """Built-in pieces only, so the artefact needs no code beside it."""
    encode = OneHotEncoder(
        categories=[list(values) for values in ATTRIBUTES.values()],
        handle_unknown="ignore",
        sparse_output=False,
    )
    # Boosting generalises the additive rules best: about 99% cross-validated accuracy, against
    # about 96% for a single decision tree or 95% for a random forest on one-hot columns.
    classifier = GradientBoostingClassifier(
        n_estimators=200, learning_rate=0.3, max_depth=3, random_state=SEED
    )
    return Pipeline([("encode", encode), ("classifier", classifier)])


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_config(sha256: str) -> ModelConfig:
    return ModelConfig(
        name="car_evaluation",
        version="1.0.0",
        description="Car evaluation: rates a car unacc, acc, good or vgood from its price, "
        "maintenance cost, doors, capacity, boot size and safety, as in the UCI Car Evaluation "
        "data. Trained on the full attribute grid labelled by the rule set documented in "
        "examples/car_evaluation/train.py.",
        runtime="sklearn",
        artefact=ArtefactSpec(path=MODEL_FILENAME, sha256=sha256),
        inputs=[
            InputField(
                name=name,
                type="string",
                description=DESCRIPTIONS[name],
                allowed=list(values),
            )
            for name, values in ATTRIBUTES.items()
        ],
        example=EXAMPLE,
        expected_example_output=label_car(EXAMPLE),
        output=OutputSpec(kind="classifier"),
        # Tabular pipelines cost ~1 ms per call whatever the batch: big batches pay off.
        batching=BatchingSpec(max_batch_size=256),
    )


def main(out_dir: Path = HERE) -> None:
    """Train; write the model directory's files into `out_dir` (by default beside this script)."""
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    grid = labelled_grid()
    features, target = grid[list(ATTRIBUTES)], grid["class"]
    counts = target.value_counts()
    print(f"rows: {len(grid)}")
    for name in CLASSES:
        print(f"  {name:<6} {counts.get(name, 0):>5}  {counts.get(name, 0) / len(grid):6.1%}")

    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=SEED)
    cv_scores = cross_val_score(build_pipeline(), features, target, cv=folds)
    pipeline = build_pipeline().fit(features, target)
    train_accuracy = float((pipeline.predict(features) == target).mean())
    print(f"training accuracy: {train_accuracy:.3f}")
    print(f"5-fold cross-validated accuracy: {cv_scores.mean():.3f} (+/- {cv_scores.std():.3f})")

    model_path = out_dir / MODEL_FILENAME
    joblib.dump(pipeline, model_path, compress=COMPRESS)
    sha256 = sha256_file(model_path)
    config = build_config(sha256)
    (out_dir / CONFIG_FILENAME).write_text(dump_config(config), encoding="utf-8")
    predicted = [str(label) for label in pipeline.predict(features)]
    stats = reference_statistics(
        features, config.inputs or [], predicted, created_at=REFERENCE_CREATED_AT
    )
    write_reference(out_dir / REFERENCE_FILENAME, stats)  # for drift checks while serving
    print(f"wrote {model_path.name} sha256={sha256}")
    print(f"took {time.perf_counter() - started:.1f}s")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train the car evaluation example.")
    parser.add_argument(
        "--out",
        type=Path,
        default=HERE,
        metavar="DIR",
        help="write the model directory here instead of beside this script (the committed files)",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args().out)
