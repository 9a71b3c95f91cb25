from __future__ import annotations

from pathlib import Path

import pytest

from fastinfer.model.spec import ModelConfigError, load_model_directory
from tests.conftest import write_config

BASE = {"name": "m", "version": "1", "artefact": {"path": "model.joblib"}}


def test_a_valid_directory_loads(tmp_path: Path) -> None:
    write_config(tmp_path, {**BASE, "inputs": [{"name": "a", "type": "number"}]})
    directory = load_model_directory(tmp_path)
    assert directory.config.name == "m"
    assert directory.artefact_path == tmp_path.resolve() / "model.joblib"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "Bad Name"}, "name"),
        ({"artefact": {"path": "../outside.joblib"}}, "inside the model directory"),
        ({"artefact": {"path": "/etc/passwd"}}, "inside the model directory"),
        ({"artefact": {"path": "m.joblib", "sha256": "abc"}}, "64 hexadecimal"),
        ({"code_paths": ["../../evil.py"]}, "inside the model directory"),
        ({"inputs": [{"name": "a"}, {"name": "a"}]}, "duplicate input fields: a"),
        ({"inputs": [{"name": "a", "type": "string", "minimum": 1}]}, "numeric type"),
        ({"inputs": [{"name": "a", "allowed": []}]}, "must not be empty"),
        ({"runtime": "tensorflow"}, "runtime"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_invalid_configs_name_the_file_and_problem(
    tmp_path: Path, change: dict, message: str
) -> None:
    write_config(tmp_path, {**BASE, **change})
    with pytest.raises(ModelConfigError) as caught:
        load_model_directory(tmp_path)
    assert str(tmp_path / "model.yaml") in str(caught.value)
    assert message in str(caught.value)


def test_missing_config_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ModelConfigError, match="no model.yaml"):
        load_model_directory(tmp_path)
    (tmp_path / "model.yaml").write_text("name: [unclosed")
    with pytest.raises(ModelConfigError, match="not valid YAML"):
        load_model_directory(tmp_path)
    (tmp_path / "model.yaml").write_text("- a list")
    with pytest.raises(ModelConfigError, match="mapping"):
        load_model_directory(tmp_path)
