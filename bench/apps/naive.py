"""The fair baseline: the FastAPI app a competent engineer writes by hand in an afternoon.

Typed pydantic request models (like the real rows), sync `def` routes that FastAPI runs in its
thread pool, the same artefacts as fastinfer (joblib pipeline, ONNX graph with the threads its
model.yaml asks for), a pandas DataFrame / numpy array per request, label + probabilities out.
No batching across requests, no sha256 check, no request logging.

    BENCH_TITANIC_DIR=examples/titanic BENCH_MLP_DIR=bench/build/models/mlp \\
        BENCH_TABULAR_DIR=bench/build/models/tabular \\
        uvicorn bench.apps.naive:app --workers 2 --loop uvloop --http httptools --no-access-log
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field, create_model

app = FastAPI(title="naive baseline")


def _config(directory: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((directory / "model.yaml").read_text("utf-8"))
    return loaded


def _labels(config: dict[str, Any], classes: list[Any]) -> list[str]:
    mapping = (config.get("output") or {}).get("labels") or {}
    return [str(mapping.get(str(c), c)) for c in classes]


def _answer(config: dict[str, Any], probabilities: Any, labels: list[str]) -> dict[str, Any]:
    predictions = [
        {
            "label": labels[int(np.argmax(row))],
            "probabilities": {
                label: round(float(p), 6) for label, p in zip(labels, row, strict=True)
            },
        }
        for row in probabilities
    ]
    return {
        "model": config["name"],
        "version": str(config["version"]),
        "request_id": uuid.uuid4().hex,
        "predictions": predictions,
    }


class TitanicRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    PassengerId: Annotated[int, Field(ge=1)]
    Pclass: Literal[1, 2, 3]
    Name: Annotated[str, Field(max_length=200)]
    Sex: Literal["male", "female"]
    Age: Annotated[float | None, Field(ge=0, le=120)] = None
    SibSp: Annotated[int, Field(ge=0, le=20)]
    Parch: Annotated[int, Field(ge=0, le=20)]
    Ticket: Annotated[str, Field(max_length=64)]
    Fare: Annotated[float, Field(ge=0, le=10000)]
    Cabin: Annotated[str | None, Field(max_length=64)] = None
    Embarked: Literal["S", "C", "Q"] | None = None


class TitanicRequest(BaseModel):
    inputs: Annotated[list[TitanicRow], Field(min_length=1, max_length=1024)]


_titanic_dir = os.environ.get("BENCH_TITANIC_DIR")
if _titanic_dir:
    import joblib
    import pandas as pd

    TITANIC_DIR = Path(_titanic_dir).resolve()
    sys.path.insert(0, str(TITANIC_DIR))  # the pickle imports titanic_features
    TITANIC_CONFIG = _config(TITANIC_DIR)
    TITANIC_MODEL = joblib.load(TITANIC_DIR / TITANIC_CONFIG["artefact"]["path"])
    TITANIC_LABELS = _labels(TITANIC_CONFIG, list(TITANIC_MODEL.classes_))
    TITANIC_COLUMNS = list(TitanicRow.model_fields)

    @app.post("/v1/models/titanic/predict")
    def predict_titanic(request: TitanicRequest) -> dict[str, Any]:
        frame = pd.DataFrame([row.model_dump() for row in request.inputs], columns=TITANIC_COLUMNS)
        probabilities = TITANIC_MODEL.predict_proba(frame)
        return _answer(TITANIC_CONFIG, probabilities, TITANIC_LABELS)


_mlp_dir = os.environ.get("BENCH_MLP_DIR")
if _mlp_dir:
    import onnxruntime as ort

    MLP_DIR = Path(_mlp_dir).resolve()
    MLP_CONFIG = _config(MLP_DIR)
    _options = ort.SessionOptions()
    _threads = MLP_CONFIG.get("runtime_options") or {}
    _options.intra_op_num_threads = int(_threads.get("intra_op_threads", 0))
    _options.inter_op_num_threads = int(_threads.get("inter_op_threads", 0))
    MLP_SESSION = ort.InferenceSession(
        str(MLP_DIR / MLP_CONFIG["artefact"]["path"]),
        sess_options=_options,
        providers=["CPUExecutionProvider"],
    )
    _input = MLP_SESSION.get_inputs()[0]
    MLP_INPUT = _input.name
    MLP_FEATURES = int(_input.shape[1])
    MLP_CLASSES = int(MLP_SESSION.get_outputs()[0].shape[1])
    MLP_LABELS = _labels(MLP_CONFIG, list(range(MLP_CLASSES)))
    _vector = Annotated[list[float], Field(min_length=MLP_FEATURES, max_length=MLP_FEATURES)]
    _row_fields: dict[str, Any] = {MLP_INPUT: (_vector, ...)}  # the graph's input name
    MlpRow: Any = create_model("MlpRow", __config__=ConfigDict(extra="forbid"), **_row_fields)
    MlpRequest: Any = create_model(
        "MlpRequest",
        inputs=(Annotated[list[MlpRow], Field(min_length=1, max_length=1024)], ...),
    )

    @app.post("/v1/models/mlp/predict")
    def predict_mlp(request: MlpRequest) -> dict[str, Any]:
        rows = request.inputs  # type: ignore[attr-defined]  # a model built at run time
        x = np.asarray([getattr(row, MLP_INPUT) for row in rows], dtype=np.float32)
        (probabilities,) = MLP_SESSION.run(None, {MLP_INPUT: x})
        return _answer(MLP_CONFIG, probabilities, MLP_LABELS)


class TabularRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pclass: Literal[1, 2, 3]
    sex: Literal["female", "male"]
    embarked: Literal["C", "Q", "S"]
    age: Annotated[float, Field(ge=0, le=100)]
    sibsp: Annotated[int, Field(ge=0, le=10)]
    parch: Annotated[int, Field(ge=0, le=10)]
    fare: Annotated[float, Field(ge=0, le=1000)]


class TabularRequest(BaseModel):
    inputs: Annotated[list[TabularRow], Field(min_length=1, max_length=1024)]


_tabular_dir = os.environ.get("BENCH_TABULAR_DIR")
if _tabular_dir:
    import joblib
    import pandas as pd

    TABULAR_DIR = Path(_tabular_dir).resolve()
    TABULAR_CONFIG = _config(TABULAR_DIR)
    TABULAR_MODEL = joblib.load(TABULAR_DIR / TABULAR_CONFIG["artefact"]["path"])
    TABULAR_LABELS = _labels(TABULAR_CONFIG, list(TABULAR_MODEL.classes_))
    TABULAR_COLUMNS = list(TabularRow.model_fields)

    @app.post("/v1/models/tabular/predict")
    def predict_tabular(request: TabularRequest) -> dict[str, Any]:
        frame = pd.DataFrame([row.model_dump() for row in request.inputs], columns=TABULAR_COLUMNS)
        probabilities = TABULAR_MODEL.predict_proba(frame)
        return _answer(TABULAR_CONFIG, probabilities, TABULAR_LABELS)


@app.get("/livez")
def livez() -> dict[str, str]:
    return {"status": "alive"}


@app.get("/readyz")
def readyz() -> dict[str, str]:
    if not (_titanic_dir or _mlp_dir or _tabular_dir):
        raise HTTPException(503, "no model configured")
    return {"status": "ready"}
