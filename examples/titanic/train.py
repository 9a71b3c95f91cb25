"""Train the Titanic survival example on a deterministic synthetic passenger list.

No data set can be downloaded where this runs, so the script generates 1,309 passengers (as many
as the Kaggle train and test sets together) from a fixed seed, shaped by these published facts about
the Kaggle training set (891 passengers, `train.csv`):

- Survival rate by class and sex (survivors / passengers): female 1st 91/94 = 0.968, 2nd 70/76 =
  0.921, 3rd 72/144 = 0.500; male 1st 45/122 = 0.369, 2nd 17/108 = 0.157, 3rd 47/347 = 0.135.
  These are reproduced exactly (to rounding): each class-and-sex group gets round(rate * size)
  survivors.
- Class shares 216/184/491 = 24.2% / 20.7% / 55.1%; women 94/216, 76/184, 144/491 of each class
  (35.2% overall).
- Port of embarkation S/C/Q 644/168/77 (72% / 19% / 9%), by class 1st 127/85/2, 2nd 164/17/3,
  3rd 353/66/72; two passengers (both first-class women) have no port recorded.
- Age: between 0.42 and 80, fractional below one year; mean age about 38 / 30 / 25 by class;
  177 of 891 (19.9%) have no age, by class 30/216, 11/184, 136/491.
- Fare (the ticket price in pounds): mean about 84.15 / 20.66 / 13.68 by class, right-skewed
  (standard deviation about 78 / 13 / 12), at most 512.3292 and otherwise at least 4.0125; 15
  passengers have a fare of 0.
- Cabin recorded for 176/216, 16/184 and 12/491 passengers of each class; first class on decks A-E
  (and one on T), second on D-F, third on E-G; some tickets list several cabins ("C23 C25 C27") or
  odd forms ("F G73").
- Family size (SibSp + Parch + 1): 1: 537, 2: 161, 3: 102, 4: 29, 5: 15, 6: 22, 7: 12, 8: 6,
  11: 7; large families travelled third class.
- Names read "Surname, Title. Given names", married women as "Surname, Mrs. Husband's names
  (Own names)". Titles follow sex and age: Master for boys up to 12, Miss for girls and unmarried
  women, plus a few Dr, Rev, Col, Major, Capt, Sir, Don, Jonkheer, Lady, the Countess, Mlle, Mme and
  Ms; none of the six clergymen (Rev) survived.

Within each class-and-sex group, who survives is drawn with weights that follow the well-known
patterns of the disaster without changing the group rates: children under 12 ("women and children
first") weigh 8, so that boys (Master) survive about as often as in the Kaggle data (23 of 40,
against 81 of 517 for Mr); passengers in a family of 2-4 weigh 1.5 and of 5 or more 0.6 (in the
Kaggle data only 10 of 62 such passengers survived); clergymen weigh 0.2. These weights, the age
and fare distributions' exact shapes and the name and ticket lists are modelling choices, not
data. The rows are split like Kaggle (891 to train, 418 held out), a pipeline of `TitanicFeatures`
(feature engineering, one-hot encoding and scaling) and logistic regression is trained, and the
script writes `model.joblib`, `holdout.csv` (the held-out rows in Kaggle's format, with Survived),
`reference.json` (training statistics for drift checks) and `model.yaml` beside itself, or with
`--out DIR` into DIR (with a copy of `titanic_features.py`, so DIR is a complete model directory).

Reproducibility: these files are committed, and the committed `model.joblib` is the source of
truth; the sha256 pin in the committed `model.yaml` is the digest of that file. Runs on one machine
with one set of libraries write byte-identical files, but the fitted coefficients come from
floating-point code whose last bits can depend on the CPU and on the BLAS/numpy build (an AMD EPYC
machine writes different bytes than the Intel machine the artefacts were built on), so a retrain
elsewhere may change the pin. It predicts the same labels: tests/test_examples.py retrains into a
temporary folder and compares its predictions on the holdout rows with the committed model's.
`make retrain` re-creates the committed files; run it (and commit the result) only when the
training changes.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

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
# The pickle must name `titanic_features.TitanicFeatures`, the module the server imports from
# `code_paths`, so import it from this folder rather than defining anything in `__main__`.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
from titanic_features import RAW_COLUMNS, TitanicFeatures  # noqa: E402

SEED = 1912  # the year of the sinking
N_PASSENGERS = 1309  # Kaggle train (891) + test (418)
N_HOLDOUT = 418  # the size of Kaggle's test set
MODEL_FILENAME = "model.joblib"
FEATURES_FILENAME = "titanic_features.py"  # the code_paths module the artefact imports
REFERENCE_FILENAME = "reference.json"  # training-data statistics, for drift checks
# reference.json's `created_at`: fixed rather than the clock's time, so the file is deterministic.
REFERENCE_CREATED_AT = datetime(2026, 12, 6, tzinfo=UTC)
HOLDOUT_FILENAME = "holdout.csv"
KAGGLE_COLUMNS = ("PassengerId", "Survived", *RAW_COLUMNS[1:])  # train.csv's column order

SURVIVAL_RATE: dict[tuple[int, str], float] = {
    (1, "female"): 91 / 94,
    (2, "female"): 70 / 76,
    (3, "female"): 72 / 144,
    (1, "male"): 45 / 122,
    (2, "male"): 17 / 108,
    (3, "male"): 47 / 347,
}
CLASS_SHARE = {1: 216 / 891, 2: 184 / 891, 3: 491 / 891}
FEMALE_SHARE = {1: 94 / 216, 2: 76 / 184, 3: 144 / 491}
PORT_SHARE = {  # S, C, Q
    1: (127 / 214, 85 / 214, 2 / 214),
    2: (164 / 184, 17 / 184, 3 / 184),
    3: (353 / 491, 66 / 491, 72 / 491),
}
AGE_MISSING = {1: 30 / 216, 2: 11 / 184, 3: 136 / 491}
CABIN_SHARE = {1: 176 / 216, 2: 16 / 184, 3: 12 / 491}
CABIN_DECKS = {1: ("A", "B", "B", "C", "C", "D", "E"), 2: ("D", "E", "F", "F"), 3: ("E", "F", "G")}
FARE_MEAN = {1: 84.15, 2: 20.66, 3: 13.68}
FARE_SD = {1: 78.4, 2: 13.4, 3: 11.8}
FARE_MAX = 512.3292
ZERO_FARE_SHARE = 15 / 891
FAMILY_SIZE_COUNTS = {1: 537, 2: 161, 3: 102, 4: 29, 5: 15, 6: 22, 7: 12, 8: 6, 11: 7}
# Modelling choices (see the docstring): age by class and the survival weights.
ADULT_AGE = {1: (39.5, 13.0), 2: (31.5, 12.0), 3: (27.0, 10.0)}  # mean, sd; 13 to 80
CHILD_SHARE = {1: 0.03, 2: 0.10, 3: 0.12}  # under 12
WEIGHT_CHILD, WEIGHT_SMALL_FAMILY, WEIGHT_LARGE_FAMILY, WEIGHT_CLERGY = 8.0, 1.5, 0.6, 0.2

SURNAMES = (
    "Andersson", "Sage", "Goodwin", "Skoog", "Johnson", "Carter", "Panula", "Rice", "Asplund",
    "Fortune", "Brown", "Smith", "Kelly", "Williams", "Davies", "Harris", "Allison", "Baclini",
    "Palsson", "Sandstrom", "Braund", "Cumings", "Heikkinen", "Futrelle", "Allen", "Moran",
    "McCarthy", "Nasser", "Bonnell", "Saundercock", "Vestrom", "Hewlett", "Masselmani", "Beesley",
    "McGowan", "Sloper", "Emir", "Fynney", "Boulos", "Nicola-Yarred", "Laroche",
    "Wheadon", "Meyer", "Holverson", "Mamee", "Cann", "Nosworthy", "Harper", "Faunthorpe",
    "Ostby", "Woolner", "Rugg", "Novel", "West", "Goldschmidt", "Greenfield", "Doling", "Kantor",
    "Petranec", "Petroff", "White", "Widener", "Hays", "Astor", "Strauss", "Thayer", "Ryerson",
    "Dodge", "Hoyt", "Chaffee", "Graham", "Peuchen", "Becker", "Collyer", "Hart", "Wells",
    "Quick", "Caldwell", "Richards", "O'Brien", "O'Dwyer", "Dean", "Coutts", "Dahl", "Lindqvist",
)  # fmt: skip
MALE_NAMES = (
    "Owen", "Harris", "William", "Henry", "James", "John", "Charles", "Thomas", "George", "Edward",
    "Arthur", "Frederick", "Albert", "Joseph", "Walter", "Alfred", "Ernest", "Harry", "Robert",
    "Patrick", "Samuel", "Karl", "Johan", "Erik", "Nils", "Leo", "Mansour", "Elias", "Youssef",
    "Richard", "Francis", "Herbert", "Percival", "Stanley", "Victor", "Benjamin", "Jacques",
)  # fmt: skip
FEMALE_NAMES = (
    "Florence", "Laina", "Lily", "Elisabeth", "Mary", "Margaret", "Anna", "Helen", "Alice", "Ellen",
    "Bridget", "Catherine", "Edith", "Ethel", "Annie", "Emily", "Marion", "Jane", "Ida", "Selma",
    "Augusta", "Sarah", "Maria", "Elizabeth", "Marguerite", "Juliette", "Amy", "Lucy", "Adele",
    "Kate", "Hilda", "Gertrude", "Nora", "Agnes", "Eleanor", "Dorothy", "Mathilde",
)  # fmt: skip
NICKNAMES = ("Nellie", "Annie", "Bessie", "Molly", "Jim", "Harry", "Kate", "Katie")
RARE_MALE_TITLES = {
    1: ("Dr", "Col", "Col", "Major", "Major", "Capt", "Sir", "Don", "Jonkheer", "Rev"),
    2: ("Rev", "Rev", "Rev", "Dr", "Dr"),
}
RARE_FEMALE_TITLES = ("Mlle", "Mlle", "Mme", "Ms", "Lady", "the Countess", "Dr")

TICKET_FORMATS: dict[int, tuple[tuple[str, int, int], ...]] = {  # prefix, lowest, highest number
    1: (("PC ", 17318, 17800), ("", 110000, 113900), ("", 11751, 19988), ("WE/P ", 5700, 5800),
        ("", 36928, 36973)),
    2: (("", 28000, 29000), ("", 220000, 250700), ("C.A. ", 24000, 34700),
        ("SC/PARIS ", 2100, 2170), ("S.O.C. ", 14800, 14900), ("F.C.C. ", 13500, 13600),
        ("SC/AH ", 3000, 3100)),
    3: (("", 315000, 392100), ("", 2620, 2700), ("A/5 ", 2466, 21175),
        ("STON/O2. ", 3101270, 3101300), ("SOTON/O.Q. ", 3101305, 3101315), ("CA. ", 2300, 2700),
        ("", 7534, 7553)),
}  # fmt: skip


def _pick(rng: np.random.Generator, options: tuple[Any, ...]) -> Any:
    return options[int(rng.integers(len(options)))]


def _age(rng: np.random.Generator, pclass: int, child: bool) -> float:
    if child:
        if rng.random() < 0.12:  # infants: Kaggle writes their age in twelfths, e.g. 0.83
            return round(int(rng.integers(5, 12)) / 12, 2)
        return float(rng.integers(1, 12))
    mean, sd = ADULT_AGE[pclass]
    age = float(np.clip(round(rng.normal(mean, sd)), 13, 80))
    return age + 0.5 if rng.random() < 0.03 else age  # "xx.5" marks an estimated age


def _title(rng: np.random.Generator, pclass: int, sex: str, age: float) -> str:
    if sex == "male":
        if age < 13:
            return "Master"
        if pclass in RARE_MALE_TITLES and rng.random() < (0.07 if pclass == 1 else 0.05):
            return str(_pick(rng, RARE_MALE_TITLES[pclass]))
        return "Mr"
    if age < 18:
        return "Miss"
    if pclass == 1 and rng.random() < 0.06:
        return str(_pick(rng, RARE_FEMALE_TITLES))
    married = 0.2 if age < 25 else 0.5 if age < 35 else 0.75
    return "Mrs" if rng.random() < married else "Miss"


def _given_names(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    picked = rng.choice(len(options), size=int(rng.integers(1, 3)), replace=False)
    return " ".join(options[i] for i in picked.tolist())


def _name(rng: np.random.Generator, title: str, sex: str) -> str:
    surname = str(_pick(rng, SURNAMES))
    own = _given_names(rng, FEMALE_NAMES if sex == "female" else MALE_NAMES)
    if title in ("Mrs", "Mme", "Lady", "the Countess") and rng.random() < 0.85:
        husband = _given_names(rng, MALE_NAMES)
        maiden = str(_pick(rng, SURNAMES))
        return f"{surname}, {title}. {husband} ({own} {maiden})"
    if rng.random() < 0.03:
        own += f' "{_pick(rng, NICKNAMES)}"'
    return f"{surname}, {title}. {own}"


def _ticket(rng: np.random.Generator, pclass: int) -> str:
    prefix, low, high = _pick(rng, TICKET_FORMATS[pclass])
    return f"{prefix}{int(rng.integers(low, high + 1))}"


def _fare(rng: np.random.Generator, pclass: int) -> float:
    if rng.random() < ZERO_FARE_SHARE:
        return 0.0
    # A lognormal with the class's mean and standard deviation.
    mean, sd = FARE_MEAN[pclass], FARE_SD[pclass]
    sigma2 = float(np.log1p((sd / mean) ** 2))
    fare = float(rng.lognormal(np.log(mean) - sigma2 / 2, np.sqrt(sigma2)))
    return round(min(max(fare, 4.0125), FARE_MAX), 4)


def _cabin(rng: np.random.Generator, pclass: int) -> str | None:
    if rng.random() >= CABIN_SHARE[pclass]:
        return None
    deck = _pick(rng, CABIN_DECKS[pclass])
    if pclass == 1 and rng.random() < 0.005:
        return "T"
    if pclass == 3 and rng.random() < 0.25:
        return f"F {_pick(rng, ('G', 'E'))}{int(rng.integers(60, 75))}"
    first = int(rng.integers(2, 125))
    if pclass == 1 and rng.random() < 0.12:
        return " ".join(f"{deck}{first + 2 * k}" for k in range(int(rng.integers(2, 5))))
    return f"{deck}{first}"


def _family(rng: np.random.Generator, pclass: int, title: str) -> tuple[int, int]:
    sizes = list(FAMILY_SIZE_COUNTS)
    weights = np.array([FAMILY_SIZE_COUNTS[s] for s in sizes], dtype=float)
    if pclass != 3:
        weights[[i for i, s in enumerate(sizes) if s >= 5]] = 0.0
    others = int(rng.choice(sizes, p=weights / weights.sum())) - 1
    if others == 0:
        return 0, 0
    if title in ("Master",) or (title == "Miss" and rng.random() < 0.5):
        parch = min(others, 2)  # a child with one or both parents
        return others - parch, parch
    if title in ("Mr", "Mrs") and rng.random() < 0.7:
        return 1, others - 1  # a spouse and children
    sibsp = int(rng.integers(0, others + 1))
    return sibsp, others - sibsp


def generate_passengers(seed: int = SEED, n: int = N_PASSENGERS) -> pd.DataFrame:
    """A synthetic passenger list in Kaggle's `train.csv` format, the same for the same seed."""
    rng = np.random.default_rng(seed)
    classes = rng.choice([1, 2, 3], size=n, p=[CLASS_SHARE[c] for c in (1, 2, 3)])
    rows: list[dict[str, Any]] = []
    for passenger_id, pclass in enumerate(classes.tolist(), start=1):
        sex = "female" if rng.random() < FEMALE_SHARE[pclass] else "male"
        child = bool(rng.random() < CHILD_SHARE[pclass])
        age = _age(rng, pclass, child)
        title = _title(rng, pclass, sex, age)
        sibsp, parch = _family(rng, pclass, title)
        rows.append(
            {
                "PassengerId": passenger_id,
                "Survived": 0,
                "Pclass": pclass,
                "Name": _name(rng, title, sex),
                "Sex": sex,
                "Age": None if rng.random() < AGE_MISSING[pclass] else age,
                "SibSp": sibsp,
                "Parch": parch,
                "Ticket": _ticket(rng, pclass),
                "Fare": _fare(rng, pclass),
                "Cabin": _cabin(rng, pclass),
                "Embarked": str(rng.choice(["S", "C", "Q"], p=PORT_SHARE[pclass])),
                "_true_age": age,
                "_title": title,
            }
        )
    frame = pd.DataFrame(rows)

    # Exactly round(rate * size) survivors in each class-and-sex group, picked by weight.
    family = frame["SibSp"] + frame["Parch"] + 1
    weight = np.ones(n)
    weight[frame["_true_age"].to_numpy() < 12] *= WEIGHT_CHILD
    weight[family.between(2, 4).to_numpy()] *= WEIGHT_SMALL_FAMILY
    weight[(family >= 5).to_numpy()] *= WEIGHT_LARGE_FAMILY
    weight[(frame["_title"] == "Rev").to_numpy()] *= WEIGHT_CLERGY
    survived = np.zeros(n, dtype=np.int64)
    for (pclass, sex), rate in SURVIVAL_RATE.items():
        members = np.flatnonzero(((frame["Pclass"] == pclass) & (frame["Sex"] == sex)).to_numpy())
        k = round(rate * len(members))
        p = weight[members] / weight[members].sum()
        survived[rng.choice(members, size=k, replace=False, p=p)] = 1
    frame["Survived"] = survived

    # Two first-class women with no port recorded, as in the Kaggle data.
    women = np.flatnonzero(((frame["Pclass"] == 1) & (frame["Sex"] == "female")).to_numpy())
    frame.loc[rng.choice(women, size=2, replace=False), "Embarked"] = None

    frame = frame.drop(columns=["_true_age", "_title"])
    frame["Age"] = frame["Age"].astype("float64")
    frame["Cabin"] = frame["Cabin"].astype(object)
    frame["Embarked"] = frame["Embarked"].astype(object)
    return frame[list(KAGGLE_COLUMNS)]


def build_pipeline() -> Pipeline:
    """Raw Kaggle columns in, survival out: the whole of serving's work lives in the artefact.

    Two steps, both cheap per call, because a server pays for every call: `TitanicFeatures` makes
    the final feature matrix itself (one-hot encoding and scaling included; see its docstring),
    and logistic regression scores it with one matrix product. A one-row request costs well under
    a millisecond, where `ColumnTransformer`, `OneHotEncoder`, `StandardScaler` and 100 boosted
    trees cost about 5 ms. The linear model loses nothing here: on the holdout it is as accurate
    as gradient boosting with depth-2 trees (0.797 both), since class, sex, title and age carry
    the signal. Default regularisation (C=1): the features are standardised, and it was not tuned
    on the holdout.
    """
    classifier = LogisticRegression(C=1.0, max_iter=1000)
    return Pipeline([("features", TitanicFeatures()), ("classifier", classifier)])


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _field(name: str, type_: str, description: str, **extra: Any) -> InputField:
    return InputField.model_validate({"name": name, "type": type_, "description": description,
                                      **extra})  # fmt: skip


INPUTS = [
    _field("PassengerId", "integer", "Row identifier from the passenger list; not used by the "
           "model.", minimum=1),
    _field("Pclass", "integer", "Ticket class, a proxy for wealth: 1 = first, 2 = second, "
           "3 = third.", allowed=[1, 2, 3]),
    _field("Name", "string", "Full name as on the passenger list, 'Surname, Title. Given names'; "
           "the title (Mr, Mrs, Miss, Master, Dr...) is a feature.", max_length=200),
    _field("Sex", "string", "The passenger's sex.", allowed=["male", "female"]),
    _field("Age", "number", "Age in years, fractional below one; null when unknown (then the "
           "median age of the passenger's title is used).", nullable=True, minimum=0, maximum=120),
    _field("SibSp", "integer", "Number of siblings and spouses aboard.", minimum=0, maximum=20),
    _field("Parch", "integer", "Number of parents and children aboard.", minimum=0, maximum=20),
    _field("Ticket", "string", "Ticket number, e.g. 'PC 17599' or '113803'; not used by the "
           "model.", max_length=64),
    _field("Fare", "number", "Ticket price in pounds sterling of 1912.", minimum=0,
           maximum=10000),
    _field("Cabin", "string", "Cabin number(s), e.g. 'C85' or 'C23 C25 C27'; the first letter is "
           "the deck. Null when unknown.", nullable=True, max_length=64),
    _field("Embarked", "string", "Port of embarkation: S = Southampton, C = Cherbourg, "
           "Q = Queenstown; null when unknown.", nullable=True, allowed=["S", "C", "Q"]),
]  # fmt: skip

EXAMPLE = {  # passenger 2 of the Kaggle training set, a first-class woman who survived
    "PassengerId": 2,
    "Pclass": 1,
    "Name": "Cumings, Mrs. John Bradley (Florence Briggs Thayer)",
    "Sex": "female",
    "Age": 38.0,
    "SibSp": 1,
    "Parch": 0,
    "Ticket": "PC 17599",
    "Fare": 71.2833,
    "Cabin": "C85",
    "Embarked": "C",
}


def build_config(sha256: str) -> ModelConfig:
    return ModelConfig(
        name="titanic",
        version="1.0.0",
        description="Titanic survival: predicts whether a passenger survived the sinking from the "
        "Kaggle passenger columns. Trained on a deterministic synthetic passenger list that "
        "follows the published survival rates by class and sex (see examples/titanic/train.py).",
        runtime="sklearn",
        artefact=ArtefactSpec(path=MODEL_FILENAME, sha256=sha256),
        code_paths=[FEATURES_FILENAME],
        inputs=INPUTS,
        example=EXAMPLE,
        expected_example_output="survived",
        output=OutputSpec(kind="classifier", labels={"0": "died", "1": "survived"}),
        # Tabular pipelines cost ~1 ms per call whatever the batch: big batches pay off.
        batching=BatchingSpec(max_batch_size=512),
    )


def write_training_reference(
    out_dir: Path, config: ModelConfig, features: pd.DataFrame, pipeline: Pipeline
) -> None:
    """reference.json: the training data's distributions, for drift checks while serving."""
    labels = config.output.labels or {}
    predicted = [labels.get(str(v), str(v)) for v in pipeline.predict(features)]
    stats = reference_statistics(
        features, config.inputs or [], predicted, created_at=REFERENCE_CREATED_AT
    )
    write_reference(out_dir / REFERENCE_FILENAME, stats)


def main(out_dir: Path = HERE) -> None:
    """Train; write the model directory's files into `out_dir` (by default beside this script)."""
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    if out_dir.resolve() != HERE:
        shutil.copyfile(HERE / FEATURES_FILENAME, out_dir / FEATURES_FILENAME)
    passengers = generate_passengers()
    train, holdout = train_test_split(
        passengers, test_size=N_HOLDOUT, stratify=passengers["Survived"], random_state=SEED
    )
    pipeline = build_pipeline()
    pipeline.fit(train[list(RAW_COLUMNS)], train["Survived"])
    accuracy = float((pipeline.predict(holdout[list(RAW_COLUMNS)]) == holdout["Survived"]).mean())

    model_path = out_dir / MODEL_FILENAME
    joblib.dump(pipeline, model_path)
    holdout.sort_values("PassengerId").to_csv(
        out_dir / HOLDOUT_FILENAME, index=False, float_format="%.10g", lineterminator="\n"
    )
    sha256 = sha256_file(model_path)
    config = build_config(sha256)
    (out_dir / CONFIG_FILENAME).write_text(dump_config(config), encoding="utf-8")
    write_training_reference(out_dir, config, train[list(RAW_COLUMNS)], pipeline)

    rate = passengers.groupby(["Pclass", "Sex"])["Survived"].mean().round(3)
    print(f"passengers: {len(passengers)} (train {len(train)}, holdout {len(holdout)})")
    print(f"survival by class and sex:\n{rate.to_string()}")
    print(f"holdout accuracy: {accuracy:.3f}")
    print(f"wrote {model_path.name} sha256={sha256}")
    print(f"took {time.perf_counter() - started:.1f}s")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train the Titanic example.")
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
