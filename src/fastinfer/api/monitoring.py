"""Monitoring routes of the v1 API: feedback on logged predictions, and drift."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from fastinfer.api.errors import ERROR_RESPONSES, ErrorBody, error_content, error_example
from fastinfer.dataplane import DataPlane
from fastinfer.errors import NoReference
from fastinfer.monitoring.feedback import OutputLabels
from fastinfer.monitoring.monitor import Monitor

router = APIRouter(prefix="/v1", tags=["monitoring"])

Outcome = str | int | float | bool


class Feedback(BaseModel):
    """The true outcome of one logged prediction."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(
        min_length=1,
        max_length=200,
        description="The request id of the prediction (its X-Request-ID / `request_id`).",
    )
    row: int = Field(
        default=0, ge=0, le=1_000_000, description="Which row of that request (from 0)."
    )
    outcome: Outcome = Field(
        description="What really happened: a classifier's label (or the class it names), a "
        "regressor's value."
    )


class FeedbackAnswer(BaseModel):
    request_id: str
    row: int
    model: str
    version: str = Field(description="The version that made the prediction.")
    outcome: Outcome
    prediction: dict[str, object] | object = Field(description="The logged prediction.")
    correct: bool | None = Field(description="Whether a classifier's label was right.")
    abs_error: float | None = Field(description="A regressor's absolute error.")


@router.post(
    "/models/{name}/feedback",
    response_model=FeedbackAnswer,
    summary="Give the true outcome of a logged prediction (joined by request id)",
    responses={
        404: ERROR_RESPONSES[404],
        409: {
            "model": ErrorBody,
            "description": "The prediction log is off: feedback has nothing to join to.",
            "content": error_content(
                error_example(
                    "feedback_disabled",
                    "feedback is joined to logged predictions: turn on the prediction log "
                    "(FASTINFER_PREDICTION_LOG=jsonl or postgres)",
                    {"setting": "FASTINFER_PREDICTION_LOG"},
                )
            ),
        },
        422: ERROR_RESPONSES[422],
    },
)
async def feedback(name: str, body: Feedback, request: Request) -> FeedbackAnswer:
    """Joins the outcome to the prediction the log recorded under `request_id` (any version,
    any server process) and counts it in the live accuracy
    (`fastinfer_feedback_accuracy`, `fastinfer_feedback_mean_absolute_error`)."""
    plane: DataPlane = request.app.state.dataplane
    monitor: Monitor = request.app.state.monitor
    group = plane.group(name)

    def labels_of(version: str) -> OutputLabels:
        model = group.versions.get(version) or group.default()
        if model is None:
            return OutputLabels()
        known = model.runtime.output_labels() if model.runtime is not None else None
        return OutputLabels(model.config.output.labels, known)

    joined = await monitor.give_feedback(name, body.request_id, body.row, body.outcome, labels_of)
    return FeedbackAnswer.model_validate(joined)


class FeatureDrift(BaseModel):
    kind: str = Field(description="numeric (reference deciles) or categorical.")
    psi: float | None = Field(
        description="Population stability index against the reference; null below 30 values."
    )
    rows: int
    missing: int
    missing_rate: float | None
    reference_missing_rate: float | None
    out_of_range: int = Field(
        description="Values outside the reference's min..max, or categories it never saw."
    )
    drifted: bool = Field(description="psi above the threshold.")


class DriftAnswer(BaseModel):
    model: str
    version: str
    window_s: float = Field(description="The sliding window the live counts cover.")
    threshold: float
    rows: int = Field(description="Rows predicted in the window (all server processes).")
    skipped_rows: int = Field(description="Rows not counted: monitoring fell behind.")
    drifted: list[str] = Field(description="The input features whose psi is above threshold.")
    features: dict[str, FeatureDrift]
    prediction: FeatureDrift | None


@router.get(
    "/models/{name}/drift",
    response_model=DriftAnswer,
    summary="Per-feature drift (PSI) of recent inputs against the model's reference statistics",
    responses={
        404: ERROR_RESPONSES[404],
        409: {
            "model": ErrorBody,
            "description": "The version has no reference statistics (reference.json).",
            "content": error_content(
                error_example(
                    "no_reference",
                    "version 1 of 'titanic' has no reference statistics: train it with a script "
                    "that writes reference.json, or run `fastinfer init --sample`",
                    {"file": "reference.json"},
                )
            ),
        },
    },
)
async def drift(
    name: str,
    request: Request,
    version: str | None = Query(default=None, description="Default: the default version."),
) -> DriftAnswer:
    """Live inputs of the window, from every server process, binned like the reference sample
    that `reference.json` describes; a PSI above 0.2 is usually read as a real shift."""
    plane: DataPlane = request.app.state.dataplane
    monitor: Monitor = request.app.state.monitor
    _, model = plane.version(name, version)
    report: dict[str, Any] | None = await monitor.drift(model)
    if report is None:
        raise NoReference(
            f"version {model.version} of {name!r} has no reference statistics: train it with "
            "a script that writes reference.json, or run `fastinfer init --sample`",
            details={"file": "reference.json"},
        )
    return DriftAnswer.model_validate({"model": name, "version": model.version, **report})
