"""A model built before the fork still predicts in the forked worker.

GNU OpenMP (scikit-learn's histogram gradient boosting) keeps its pool threads after a
parallel region; a process forked after that hangs in its first parallel region. The
supervisor builds scikit-learn models before it forks (`prepare_all`), so that build must
leave no pool thread behind. Each step runs in a fresh interpreter: training here would start
the pool in the test process itself.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import sha256_of, write_config

TRAIN = """
import sys
import joblib
import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

features = np.random.RandomState(0).rand(4000, 4)
target = np.where(features[:, 0] > 0.5, "high", "low")
model = HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(features, target)
joblib.dump(model, sys.argv[1])
"""

SERVE = """
import os, signal, sys
from fastinfer.model.spec import load_model_directory
from fastinfer.repository.registry import ModelRegistry

models = ModelRegistry(
    [load_model_directory(sys.argv[1])], max_rows=10_000, trust_unpinned=False
)
models.prepare_all()
(model,) = models
assert model.built, model.reason
pid = os.fork()
if pid == 0:  # a worker: its own pool, 2,000 rows (one parallel region at least)
    signal.alarm(30)  # a hang ends the child with SIGALRM
    models.load(model)
    rows = model.schema.validate_rows([{"a": i / 2000, "b": 0.5, "c": 0.5, "d": 0.5}
                                       for i in range(2000)])
    labels = [p["label"] for p in model.runtime.predict(rows, model.schema.columns)]
    print(labels[0], labels[-1], flush=True)
    os._exit(0)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_a_model_built_before_the_fork_predicts_in_the_child(tmp_path: Path) -> None:
    artefact = tmp_path / "model.joblib"
    subprocess.run([sys.executable, "-c", TRAIN, str(artefact)], check=True, timeout=120)
    write_config(
        tmp_path,
        {
            "name": "boosted",
            "version": "1",
            "runtime": "sklearn",
            "artefact": {"path": "model.joblib", "sha256": sha256_of(artefact)},
            "inputs": [{"name": n, "type": "number"} for n in "abcd"],
            "example": {"a": 0.9, "b": 0.5, "c": 0.5, "d": 0.5},
            "expected_example_output": "high",
            "output": {"kind": "classifier"},
        },
    )
    serving = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SERVE), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert serving.returncode == 0, f"child exit {serving.returncode}: {serving.stderr[-2000:]}"
    assert serving.stdout.splitlines()[-1].split() == ["low", "high"]  # after the log lines
