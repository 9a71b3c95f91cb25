"""The one path every protocol takes to a prediction: resolve, validate, admit, infer, shape.

Routes hand it bytes and get back plain data; it knows nothing about HTTP framing, so the typed
v1 API and later protocols share validation, limits, deadlines and error semantics.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from fastinfer.config import Settings
from fastinfer.engine import Engine, WorkItem
from fastinfer.errors import (
    InferenceFailed,
    InvalidInput,
    MalformedRequest,
    ModelNotFound,
    ModelNotReady,
    PayloadTooLarge,
    RequestRejected,
    ServiceError,
    new_error_id,
)
from fastinfer.model.hooks import HookContext, Reject
from fastinfer.model.schema import InvalidRowsError, MalformedBodyError, TooManyRowsError
from fastinfer.monitoring.monitor import Monitor
from fastinfer.observability.logging import get_logger
from fastinfer.repository.registry import ModelRegistry
from fastinfer.repository.served import ModelVersions, ServedModel
from fastinfer.runtimes import Prediction, Row

TIMEOUT_HEADER = "X-Request-Timeout"
log = get_logger("fastinfer.dataplane")


class DataPlane:
    def __init__(
        self,
        registry: ModelRegistry,
        engine: Engine,
        settings: Settings,
        monitor: Monitor | None = None,
    ) -> None:
        self.registry = registry
        self.engine = engine
        self.settings = settings
        self.monitor = monitor

    def model(self, name: str, version: str | None = None) -> ServedModel:
        """The named version (default: the model's default), ready to predict; 404 or 503.

        The caller holds the version until it answers: call `release` when done, so that a
        version being retired is only stopped once nothing is using it.
        """
        group = self.group(name)
        model = group.default() if version is None else group.versions.get(version)
        if model is None and version is not None:
            raise _no_version(group, version)
        if model is None or not model.serving:
            shown = model or self.registry.resolve(name)
            reason = (shown.reason if shown else None) or "no version loaded"
            raise ModelNotReady(
                f"model {name!r} is not ready: {reason}",
                details={"state": shown.state.value if shown else "absent"},
                headers={"Retry-After": "5"},
            )
        model.in_flight += 1
        return model

    def group(self, name: str) -> ModelVersions:
        """The model's versions; 404 naming the models there are."""
        group = self.registry.get(name)
        if group is None:
            known = self.registry.names()
            raise ModelNotFound(f"no model named {name!r}", details={"available": known})
        return group

    def version(self, name: str, version: str | None) -> tuple[ModelVersions, ServedModel]:
        """The named version, or the default (else the newest), in any state: to describe or
        monitor it, not to predict with it; 404."""
        group = self.group(name)
        model = self.registry.resolve(name, version)
        if model is None:
            raise _no_version(group, version)
        return group, model

    @staticmethod
    def release(model: ServedModel) -> None:
        model.in_flight -= 1

    def deadline(self, header: str | None) -> float:
        """The request's deadline (monotonic) from `X-Request-Timeout` seconds or the default."""
        timeout = self.settings.request_timeout_s
        if header is not None:
            try:
                timeout = float(header)
            except ValueError:
                timeout = math.nan
            if not math.isfinite(timeout) or timeout <= 0:
                raise MalformedRequest(
                    f"{TIMEOUT_HEADER} must be a positive number of seconds (got {header[:32]!r})",
                    details={"header": TIMEOUT_HEADER},
                )
            timeout = min(timeout, self.settings.max_request_timeout_s)
        return time.monotonic() + timeout

    def parse(self, model: ServedModel, body: bytes) -> list[Row]:
        """Request bytes → validated rows, or the 400/413/422 that says what is wrong."""
        assert model.schema is not None  # a ready model has a schema
        try:
            return model.schema.parse_request(body)
        except MalformedBodyError as exc:
            raise MalformedRequest(str(exc)) from None
        except TooManyRowsError as exc:
            raise PayloadTooLarge(
                str(exc), details={"rows": exc.actual, "max_rows": exc.limit}
            ) from None
        except InvalidRowsError as exc:
            raise _invalid(model, exc) from None

    def validate(self, model: ServedModel, rows: list[Row]) -> list[Row]:
        """Rows another protocol decoded → validated rows (the same checks as `parse`)."""
        assert model.schema is not None
        try:
            return model.schema.validate_rows(rows)
        except InvalidRowsError as exc:
            raise _invalid(model, exc) from None

    async def before_hooks(self, model: ServedModel, rows: list[Row], request_id: str) -> list[Row]:
        """Rows after the model's pre-hooks (validated again if a hook changed them)."""
        context = HookContext(model.name, model.version, request_id)
        try:
            changed = await model.hooks.before(rows, context)
        except Reject as refused:
            status = refused.status if 400 <= refused.status < 500 else 422
            raise RequestRejected(refused.message, status) from None
        return rows if changed is None else self.validate(model, changed)

    @staticmethod
    def after_hooks(
        model: ServedModel, rows: list[Row], predictions: list[Prediction], request_id: str
    ) -> Callable[[], None] | None:
        """What to call once the response is sent (None: the model has no post-hooks)."""
        if not model.hooks.post:
            return None
        context = HookContext(model.name, model.version, request_id)
        return lambda: model.hooks.after(rows, predictions, context)

    async def infer(
        self, model: ServedModel, rows: list[Row], deadline: float, request_id: str
    ) -> tuple[list[Prediction], WorkItem]:
        """Predictions for validated rows; 503/504 from the engine, 500 if the model raised."""
        try:
            return await self.engine.infer(model, rows, deadline, request_id)
        except ServiceError:
            raise
        except Exception as exc:  # its traceback is logged by the worker that ran it
            error_id = new_error_id()
            log.error(
                "inference_failed",
                error_id=error_id,
                request_id=request_id,
                model=model.name,
                version=model.version,
                error=type(exc).__name__,
            )
            raise InferenceFailed(
                f"model {model.name!r} failed on this input (error id {error_id})",
                details={"error_id": error_id},
            ) from None

    def observe(
        self,
        model: ServedModel,
        rows: list[Row],
        predictions: list[Prediction],
        request_id: str,
        started: float | None,
    ) -> None:
        """Hand a request's predictions to monitoring (prediction log, drift): cheap, no raise."""
        if self.monitor is not None:
            self.monitor.observe(model, rows, predictions, request_id, started)

    async def predict(
        self, model: ServedModel, rows: list[Row], deadline: float, request_id: str
    ) -> tuple[dict[str, Any], WorkItem]:
        predictions, item = await self.infer(model, rows, deadline, request_id)
        answer = {
            "model": model.name,
            "version": model.version,
            "request_id": request_id,
            "predictions": predictions,
        }
        return answer, item


def _invalid(model: ServedModel, exc: InvalidRowsError) -> InvalidInput:
    return InvalidInput(
        f"the input does not match the schema of model {model.name!r}: {exc}",
        details=[p.as_dict() for p in exc.problems],
    )


def _no_version(group: ModelVersions, version: str | None) -> ModelNotFound:
    return ModelNotFound(
        f"model {group.name!r} has no version {version!r}",
        details={"available": sorted(group.versions)},
    )
