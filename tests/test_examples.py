"""The example models: committed artefacts, reproducible builds, faithful synthetic data and rules
the model learned.

The artefacts (model.joblib, reference.json, Titanic's holdout.csv) are committed with their sha256
pins, and the committed files are the source of truth: a retrain on another CPU may write other
bytes, so these tests check that the committed pins match the committed bytes, that a retrain on
this machine is byte-identical to another retrain on it, and that a retrain predicts the same
labels as the committed model. The training scripts run in a temporary copy of their folder or
with `--out` into a temporary folder, so the real ones are never touched.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from fastinfer.model.spec import ModelConfig, load_model_directory

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
EXAMPLE_NAMES = ("titanic", "car_evaluation")
# What train.py writes, all of it committed (model.yaml holds the pin of model.joblib).
OUTPUTS = {
    "titanic": ("model.joblib", "model.yaml", "reference.json", "holdout.csv"),
    "car_evaluation": ("model.joblib", "model.yaml", "reference.json"),
}
# A retrain elsewhere may differ in the last bits of its floats; its probabilities may not differ
# from the committed model's by more than this (absolute), and its labels not at all.
PROBABILITY_TOLERANCE = 1e-6

# Kaggle train.csv: survival rate by (class, sex); see examples/titanic/train.py.
PUBLISHED_SURVIVAL = {
    (1, "female"): 0.968,
    (2, "female"): 0.921,
    (3, "female"): 0.500,
    (1, "male"): 0.369,
    (2, "male"): 0.157,
    (3, "male"): 0.135,
}
UCI_CLASS_SHARE = {"unacc": 0.700, "acc": 0.222, "good": 0.040, "vgood": 0.038}


def _load_module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def restore_sys_path() -> Iterator[None]:
    """The Titanic script puts its folder on sys.path; undo that after this module's tests."""
    saved = list(sys.path)
    yield
    sys.path[:] = saved


@pytest.fixture(scope="module")
def titanic_train(restore_sys_path: None) -> ModuleType:
    return _load_module("titanic_train_under_test", EXAMPLES / "titanic" / "train.py")


@pytest.fixture(scope="module")
def titanic_features(titanic_train: ModuleType) -> ModuleType:
    """The feature module, as the training script imported it (from its folder on sys.path)."""
    return sys.modules[titanic_train.TitanicFeatures.__module__]


@pytest.fixture(scope="module")
def car_train() -> ModuleType:
    return _load_module("car_train_under_test", EXAMPLES / "car_evaluation" / "train.py")


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """Each example built twice, all builds at once: once by a copy of the script in a copy of its
    folder (writing beside itself, as `make retrain` does), once by the repository's script with
    `--out` (writing into a temporary folder, leaving the committed files alone).

    The scripts run from an unrelated working directory to show that they write beside
    themselves or into `--out`, not into the CWD.
    """
    root = tmp_path_factory.mktemp("example-builds")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    running: list[tuple[str, Path, subprocess.Popen[str]]] = []
    for name in EXAMPLE_NAMES:
        ignore = shutil.ignore_patterns(*OUTPUTS[name], "__pycache__")
        copy = root / f"{name}-copy"
        shutil.copytree(EXAMPLES / name, copy, ignore=ignore)
        out = root / f"{name}-out"
        commands = (
            (copy, [str(copy / "train.py")]),
            (out, [str(EXAMPLES / name / "train.py"), "--out", str(out)]),
        )
        for folder, command in commands:
            process = subprocess.Popen(
                [sys.executable, *command],
                cwd=root,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            running.append((name, folder, process))
    result: dict[str, list[Path]] = {name: [] for name in EXAMPLE_NAMES}
    for name, folder, process in running:
        output, _ = process.communicate(timeout=240)
        assert process.returncode == 0, f"the build into {folder} failed:\n{output}"
        result[name].append(folder)
    return result


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _config_without_sha(config: ModelConfig) -> dict[str, Any]:
    data = config.model_dump(mode="json")
    data["artefact"].pop("sha256")
    return data


# --- both examples ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_committed_pin_is_the_committed_artefacts_digest(name: str) -> None:
    """The committed model.joblib is the source of truth, and model.yaml pins exactly it."""
    directory = load_model_directory(EXAMPLES / name)
    assert directory.config.artefact is not None
    assert directory.artefact_path == EXAMPLES / name / "model.joblib"
    assert directory.config.artefact.sha256 == _sha256(EXAMPLES / name / "model.joblib")
    for filename in OUTPUTS[name]:
        assert (EXAMPLES / name / filename).is_file(), filename


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_builds_on_one_machine_are_byte_identical_and_pinned(
    builds: dict[str, list[Path]], name: str
) -> None:
    """Byte-identical on one machine with one set of libraries (not across CPUs: the committed
    files, not a rebuild, are what is served)."""
    first, second = builds[name]
    for filename in OUTPUTS[name]:
        assert (first / filename).read_bytes() == (second / filename).read_bytes(), filename
    directory = load_model_directory(second)
    assert directory.config.artefact is not None
    assert directory.config.artefact.sha256 == _sha256(second / "model.joblib")
    assert directory.artefact_path == second / "model.joblib"
    for rel in directory.config.code_paths:  # --out writes a complete model directory
        assert (second / rel).is_file()
        assert (second / rel).read_bytes() == (EXAMPLES / name / rel).read_bytes()


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_committed_config_matches_a_fresh_build(builds: dict[str, list[Path]], name: str) -> None:
    """The committed model.yaml is what the script writes (the digest depends on the CPU and the
    library versions, so only it may differ): edit the script, then `make retrain` and commit."""
    committed = load_model_directory(EXAMPLES / name).config
    built = load_model_directory(builds[name][0]).config
    assert _config_without_sha(committed) == _config_without_sha(built)


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_config_is_plain_yaml_with_a_valid_example(name: str) -> None:
    raw = yaml.safe_load((EXAMPLES / name / "model.yaml").read_text(encoding="utf-8"))
    config = ModelConfig.model_validate(raw)
    assert config.example is not None and config.inputs is not None
    fields = {f.name: f for f in config.inputs}
    assert set(config.example) == set(fields)
    for key, value in config.example.items():
        field = fields[key]
        assert field.allowed is None or value in field.allowed, key
        assert field.minimum is None or value >= field.minimum, key
        assert field.maximum is None or value <= field.maximum, key


# --- Titanic -----------------------------------------------------------------------------------


def test_titanic_synthetic_data_follows_published_rates(titanic_train: ModuleType) -> None:
    passengers = titanic_train.generate_passengers()
    assert len(passengers) == 1309
    assert list(passengers.columns) == [
        "PassengerId", "Survived", "Pclass", "Name", "Sex", "Age", "SibSp", "Parch", "Ticket",
        "Fare", "Cabin", "Embarked",
    ]  # fmt: skip
    rates = passengers.groupby(["Pclass", "Sex"])["Survived"].mean()
    for key, published in PUBLISHED_SURVIVAL.items():
        assert rates[key] == pytest.approx(published, abs=0.02), key
    shares = passengers["Pclass"].value_counts(normalize=True)
    for pclass, share in {1: 0.24, 2: 0.21, 3: 0.55}.items():
        assert shares[pclass] == pytest.approx(share, abs=0.03)
    assert (passengers["Sex"] == "female").mean() == pytest.approx(0.35, abs=0.03)
    assert passengers["Age"].isna().mean() == pytest.approx(0.20, abs=0.03)
    assert passengers["Embarked"].isna().sum() == 2
    ports = passengers["Embarked"].value_counts(normalize=True)
    assert ports["S"] == pytest.approx(0.72, abs=0.04)
    assert ports["C"] == pytest.approx(0.19, abs=0.04)
    assert ports["Q"] == pytest.approx(0.09, abs=0.04)
    fares = passengers.groupby("Pclass")["Fare"].mean()
    for pclass, mean in {1: 84.15, 2: 20.66, 3: 13.68}.items():
        assert fares[pclass] == pytest.approx(mean, rel=0.15)
    boys = passengers["Name"].str.contains(r", Master\.", regex=True)
    men = (passengers["Sex"] == "male") & ~boys
    assert passengers.loc[boys, "Survived"].mean() > passengers.loc[men, "Survived"].mean() + 0.15
    assert passengers.equals(titanic_train.generate_passengers())


def test_titanic_holdout_is_in_kaggle_format() -> None:
    text = (EXAMPLES / "titanic" / "holdout.csv").read_text(encoding="utf-8")
    header = text.splitlines()[0]
    assert (
        header == "PassengerId,Survived,Pclass,Name,Sex,Age,SibSp,Parch,Ticket,Fare,Cabin,Embarked"
    )
    cells = {cell for row in csv.reader(io.StringIO(text)) for cell in row}
    assert "" in cells  # missing values are empty cells...
    assert not cells & {"nan", "NaN", "None", "<NA>"}  # ...and nothing else
    holdout = pd.read_csv(EXAMPLES / "titanic" / "holdout.csv")
    assert len(holdout) == 418
    assert holdout["PassengerId"].is_unique


def test_titanic_artefact_references_the_shared_module() -> None:
    data = (EXAMPLES / "titanic" / "model.joblib").read_bytes()
    assert b"titanic_features" in data
    assert b"__main__" not in data


def test_titanic_model_predicts_sensibly(restore_sys_path: None) -> None:
    folder = EXAMPLES / "titanic"
    sys.path.insert(0, str(folder))
    directory = load_model_directory(folder)
    model = joblib.load(directory.artefact_path)
    # The pipeline names its input columns, so a server knows to hand it a DataFrame.
    assert list(model.feature_names_in_) == [field.name for field in directory.config.inputs or []]
    assert directory.config.example is not None
    assert model.predict(pd.DataFrame([directory.config.example]))[0] == 1
    assert directory.config.expected_example_output == "survived"

    holdout = pd.read_csv(folder / "holdout.csv")
    accuracy = (model.predict(holdout.drop(columns="Survived")) == holdout["Survived"]).mean()
    assert accuracy >= 0.75

    # A JSON-shaped row: ints as floats, object dtype, optional values missing or left out.
    man = {
        "PassengerId": 7.0, "Pclass": 3.0, "Name": "Kelly, Mr. James", "Sex": "male",
        "Age": None, "SibSp": 0.0, "Parch": 0.0, "Ticket": "330911", "Fare": 7.8292,
    }  # fmt: skip
    assert model.predict(pd.DataFrame([man], dtype=object))[0] == 0


def _numeric_part(features: Any, matrix: np.ndarray) -> dict[str, float]:
    """The numeric features of a one-row feature matrix, scaling undone."""
    values = features.mean_ + matrix[0, features.n_one_hot_ :] * features.scale_
    return dict(zip(features.get_feature_names_out()[features.n_one_hot_ :], values, strict=True))


def _one_hot_part(features: Any, matrix: np.ndarray, feature: str) -> dict[str, float]:
    """One categorical feature's 0/1 columns of a one-row feature matrix, by category."""
    columns = features.category_columns_[feature]
    return {category: matrix[0, column] for category, column in columns.items()}


def test_titanic_features_are_robust_to_input_types(
    titanic_train: ModuleType, titanic_features: ModuleType
) -> None:
    passengers = titanic_train.generate_passengers()
    features = titanic_features.TitanicFeatures().fit(passengers.drop(columns="Survived"))
    row = {
        "PassengerId": 1, "Pclass": 1, "Name": "Rothes, the Countess. of (Lucy Noel Martha)",
        "Sex": "female", "Age": np.nan, "SibSp": 0, "Parch": 0, "Ticket": "110152",
        "Fare": 86.5, "Cabin": "B77", "Embarked": "S",
    }  # fmt: skip
    variants = {
        "native": pd.DataFrame([row]),
        "object": pd.DataFrame([row], dtype=object),
        "str": pd.DataFrame([row]).astype({"Name": "str", "Sex": "str", "Cabin": "str"}),
        "floats": pd.DataFrame([row]).astype({"Pclass": float, "SibSp": float, "Parch": float}),
        "strings": pd.DataFrame([{k: str(v) for k, v in row.items()}]).replace("nan", ""),
        "pd.NA": pd.DataFrame([{**row, "Age": pd.NA}], dtype=object),
        "array": pd.DataFrame([row]).to_numpy(dtype=object),
    }
    expected = features.transform(variants["native"])
    names = list(features.get_feature_names_out())
    assert expected.shape == (1, len(names)) and expected.dtype == np.float64
    assert names[features.n_one_hot_ :] == list(titanic_features.NUMERIC_FEATURES)
    assert _one_hot_part(features, expected, "Title") == {
        "Master": 0.0, "Miss": 0.0, "Mr": 0.0, "Mrs": 0.0, "Rare": 1.0
    }  # fmt: skip
    assert _one_hot_part(features, expected, "Deck")["B"] == 1.0
    numeric = _numeric_part(features, expected)
    assert numeric["Age"] == pytest.approx(features.age_by_title_["Rare"])
    for name, frame in variants.items():
        np.testing.assert_array_equal(features.transform(frame), expected, err_msg=name)

    sparse = {"Pclass": 3, "Name": "Smith, Jane", "Sex": "female", "SibSp": 0, "Parch": 2,
              "Fare": None, "Cabin": "", "Embarked": None}  # fmt: skip
    out = features.transform(pd.DataFrame([sparse]))
    title = features.title_by_sex_["female"]  # no readable title: the sex's commonest
    assert _one_hot_part(features, out, "Title")[title] == 1.0
    assert _one_hot_part(features, out, "Deck")["U"] == 1.0
    assert _one_hot_part(features, out, "Embarked")[features.embarked_mode_] == 1.0
    numeric = _numeric_part(features, out)
    assert numeric["HasCabin"] == pytest.approx(0.0, abs=1e-12)
    assert numeric["FamilySize"] == pytest.approx(3.0) and numeric["IsAlone"] == pytest.approx(0.0)
    assert numeric["Fare"] == pytest.approx(np.log1p(features.fare_by_class_[3.0]))
    with pytest.raises(ValueError, match="Sex"):
        features.transform(pd.DataFrame([sparse]).drop(columns="Sex"))

    # A category not seen in fit sets none of its feature's columns (OneHotEncoder's "ignore").
    unseen = features.transform(pd.DataFrame([{**sparse, "Sex": "unknown"}]))
    assert set(_one_hot_part(features, unseen, "Sex").values()) == {0.0}


def test_titanic_features_encode_like_sklearn(
    titanic_train: ModuleType, titanic_features: ModuleType
) -> None:
    """The one-hot encoding and scaling done by hand equal OneHotEncoder's and StandardScaler's,
    and rows scored together equal rows scored one at a time."""
    raw = titanic_train.generate_passengers().drop(columns="Survived")
    features = titanic_features.TitanicFeatures().fit(raw)
    categorical, numeric = features._engineer(titanic_features._Columns.of_frame(raw))
    encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
    encoded = encoder.fit_transform(pd.DataFrame(categorical))
    scaled = StandardScaler().fit_transform(numeric)
    matrix = features.transform(raw)
    np.testing.assert_allclose(matrix, np.hstack([encoded, scaled]), rtol=0, atol=1e-12)
    assert list(features.get_feature_names_out()) == [
        *encoder.get_feature_names_out(), *titanic_features.NUMERIC_FEATURES
    ]  # fmt: skip

    sample = raw.sample(40, random_state=0)
    one_by_one = np.vstack([features.transform(sample.iloc[[i]]) for i in range(len(sample))])
    np.testing.assert_array_equal(one_by_one, features.transform(sample))


# --- car evaluation ----------------------------------------------------------------------------


def test_car_grid_is_the_full_uci_grid(car_train: ModuleType) -> None:
    grid = car_train.build_grid()
    assert grid.shape == (1728, 6)
    assert not grid.duplicated().any()
    assert list(grid.columns) == ["buying", "maint", "doors", "persons", "lug_boot", "safety"]


def test_car_rules_have_their_documented_properties(car_train: ModuleType) -> None:
    grid = car_train.labelled_grid()
    assert set(grid.loc[grid["persons"] == "2", "class"]) == {"unacc"}
    assert set(grid.loc[grid["safety"] == "low", "class"]) == {"unacc"}
    assert set(grid.loc[grid["safety"] == "med", "class"]) <= {"unacc", "acc", "good"}
    shares = grid["class"].value_counts(normalize=True)
    for label, share in UCI_CLASS_SHARE.items():
        assert shares[label] == pytest.approx(share, abs=0.02), label

    rank = {label: i for i, label in enumerate(car_train.CLASSES)}
    for row in grid.to_dict(orient="records"):
        for name, values in car_train.ATTRIBUTES.items():
            position = values.index(row[name])
            if position + 1 < len(values):
                better = {**row, name: values[position + 1]}
                assert rank[car_train.label_car(better)] >= rank[row["class"]], (row, name)
    with pytest.raises(ValueError, match="doors"):
        car_train.label_car({**car_train.EXAMPLE, "doors": "7"})


def test_car_model_agrees_with_the_rules(car_train: ModuleType) -> None:
    directory = load_model_directory(EXAMPLES / "car_evaluation")
    assert directory.config.code_paths == []
    model = joblib.load(directory.artefact_path)
    grid = car_train.labelled_grid()
    predicted = model.predict(grid[list(car_train.ATTRIBUTES)])
    assert (predicted == grid["class"].to_numpy()).mean() >= 0.97
    assert set(model.classes_) == set(car_train.CLASSES)
    example = pd.DataFrame([directory.config.example])
    assert model.predict(example)[0] == car_train.label_car(directory.config.example)
    assert directory.config.expected_example_output == model.predict(example)[0]


def test_training_writes_reference_statistics_for_drift(examples_built: None) -> None:
    from fastinfer.model.spec import load_model_directory
    from fastinfer.monitoring.reference import read_reference

    for folder, labels in (
        (EXAMPLES / "titanic", {"died", "survived"}),
        (EXAMPLES / "car_evaluation", {"unacc", "acc", "good", "vgood"}),
    ):
        reference = read_reference(folder / "reference.json")
        config = load_model_directory(folder).config
        identifiers = {"Name", "Ticket", "Cabin"}  # free text: left out (PSI would always fire)
        assert set(reference["features"]) == {f.name for f in config.inputs or []} - identifiers
        for stats in reference["features"].values():
            counted = stats["counts"]
            total = sum(counted.values()) if isinstance(counted, dict) else sum(counted)
            assert total + stats["missing"] == reference["rows"]
        assert set(reference["prediction"]["counts"]) <= labels


# --- a retrain, the committed files and the working tree --------------------------------------


def _load_pipeline(path: Path) -> Any:
    directory = load_model_directory(path.parent)
    assert directory.config.artefact is not None
    assert _sha256(path) == directory.config.artefact.sha256
    return joblib.load(path)


def _assert_same_predictions(committed: Any, retrained: Any, features: pd.DataFrame) -> None:
    assert list(retrained.classes_) == list(committed.classes_)
    np.testing.assert_array_equal(retrained.predict(features), committed.predict(features))
    np.testing.assert_allclose(
        retrained.predict_proba(features),
        committed.predict_proba(features),
        rtol=0,
        atol=PROBABILITY_TOLERANCE,
    )


def test_a_retrained_titanic_model_predicts_like_the_committed_one(
    builds: dict[str, list[Path]], restore_sys_path: None
) -> None:
    """On the 418 holdout rows: the same labels, probabilities within PROBABILITY_TOLERANCE."""
    sys.path.insert(0, str(EXAMPLES / "titanic"))  # both pickles import titanic_features
    retrained_dir = builds["titanic"][1]
    committed = _load_pipeline(EXAMPLES / "titanic" / "model.joblib")
    retrained = _load_pipeline(retrained_dir / "model.joblib")
    holdout = pd.read_csv(EXAMPLES / "titanic" / "holdout.csv")
    _assert_same_predictions(committed, retrained, holdout.drop(columns="Survived"))
    # The retrain held out the same passengers, with the same outcomes.
    retrained_holdout = pd.read_csv(retrained_dir / "holdout.csv")
    for column in ("PassengerId", "Survived"):
        assert retrained_holdout[column].tolist() == holdout[column].tolist(), column


def test_a_retrained_car_model_predicts_like_the_committed_one(
    builds: dict[str, list[Path]], car_train: ModuleType
) -> None:
    """On the whole 1,728-row grid: the same labels, probabilities within PROBABILITY_TOLERANCE."""
    committed = _load_pipeline(EXAMPLES / "car_evaluation" / "model.joblib")
    retrained = _load_pipeline(builds["car_evaluation"][1] / "model.joblib")
    grid = car_train.build_grid()
    assert len(grid) == 1728
    _assert_same_predictions(committed, retrained, grid)


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)


def test_building_and_serving_leave_the_committed_examples_unchanged(
    builds: dict[str, list[Path]], examples_built: None
) -> None:
    """After the test builds (one with `--out` from the repository's scripts) and the fixture the
    served-example tests use, git sees no changed or new file under examples/ that a build writes:
    a fresh clone stays clean."""
    if shutil.which("git") is None or _git("rev-parse", "--is-inside-work-tree").returncode:
        pytest.skip("not a git checkout")
    for name in EXAMPLE_NAMES:
        for filename in OUTPUTS[name]:
            path = f"examples/{name}/{filename}"
            assert _git("ls-files", "--error-unmatch", path).returncode == 0, (
                f"{path}: not committed"
            )
    status = _git("status", "--porcelain", "--untracked-files=all", "--", "examples")
    assert status.returncode == 0, status.stderr
    generated = {name for outputs in OUTPUTS.values() for name in outputs}
    # Working tree against the index (the second status column) and new files: what a build
    # writes. Changes already staged are someone's work, not a build's.
    dirty = [
        line
        for line in status.stdout.splitlines()
        if line.startswith("??") or (line[1] != " " and Path(line[3:]).name in generated)
    ]
    assert not dirty, f"a build changed committed files or left new ones: {dirty}"


def _files(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): _sha256(path)
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_make_models_checks_the_pins_and_never_retrains(tmp_path: Path) -> None:
    """`make models` (which `make serve` and `make test` run first) only checks the committed
    files, even when train.py looks newer than them, as it may after a fresh clone; only
    `make retrain` runs the scripts."""
    fastinfer = Path(sys.executable).parent / "fastinfer"
    if shutil.which("make") is None or not fastinfer.is_file():
        pytest.skip("needs make and the fastinfer command beside this Python")
    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    shutil.copytree(EXAMPLES, tmp_path / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    for name in EXAMPLE_NAMES:
        os.utime(tmp_path / "examples" / name / "model.joblib", (1_000_000_000, 1_000_000_000))
    before = _files(tmp_path / "examples")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    # STAMP= : the environment is this one (BIN), so make neither checks nor creates a venv.
    make = ["make", "-C", str(tmp_path), f"BIN={fastinfer.parent}", "STAMP="]

    checked = subprocess.run([*make, "models"], capture_output=True, text=True, env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "train.py" not in checked.stdout + checked.stderr
    assert _files(tmp_path / "examples") == before

    with (tmp_path / "examples" / "car_evaluation" / "model.joblib").open("ab") as handle:
        handle.write(b"tampered")
    mismatch = subprocess.run([*make, "models"], capture_output=True, text=True, env=env)
    assert mismatch.returncode != 0 and "MISMATCH" in mismatch.stdout

    (tmp_path / "examples" / "titanic" / "holdout.csv").unlink()
    missing = subprocess.run([*make, "models"], capture_output=True, text=True, env=env)
    assert missing.returncode != 0
    assert "holdout.csv is missing" in missing.stderr and "git checkout" in missing.stderr
    assert "train.py" not in missing.stdout + missing.stderr

    planned = subprocess.run([*make, "-n", "retrain"], capture_output=True, text=True, env=env)
    assert planned.returncode == 0, planned.stderr
    for name in EXAMPLE_NAMES:
        assert f"examples/{name}/train.py" in planned.stdout
