"""The naive baseline of the seed scenario: the FastAPI service most teams write first.

Sync `def` routes (FastAPI runs them in its default thread pool), one uvicorn worker, the model
called per request, and a sync `/livez` that shares the pool with the predictions.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import joblib
import pandas as pd
from fastapi import FastAPI
from pydantic import BaseModel

MODEL_DIR = Path(os.environ["NAIVE_MODEL_DIR"])
sys.path.insert(0, str(MODEL_DIR))
model = joblib.load(MODEL_DIR / "model.joblib")
app = FastAPI()


class Row(BaseModel):
    x: float
    sleep: float | None = None
    spin: float | None = None


class PredictRequest(BaseModel):
    inputs: list[Row]


@app.get("/livez")
def livez() -> dict[str, str]:
    return {"status": "alive"}


@app.post("/v1/models/scripted/predict")
def predict(request: PredictRequest) -> dict[str, list[float]]:
    frame = pd.DataFrame([row.model_dump() for row in request.inputs])
    return {"predictions": model.predict_proba(frame)[:, 1].tolist()}
