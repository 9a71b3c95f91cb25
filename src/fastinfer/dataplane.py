"""The one path every protocol takes to a prediction: resolve, validate, infer, shape.

Routes hand it bytes and get back plain data; it knows nothing about HTTP framing, so the typed
v1 API and later protocols share validation, limits and error semantics.
"""

from __future__ import annotations

from typing import Any

from fastinfer.engine import ThreadEngine
from fastinfer.errors import (
    InferenceFailed,
    InvalidInput,
    MalformedRequest,
    ModelNotFound,
    ModelNotReady,
    PayloadTooLarge,
)
from fastinfer.observability.logging import get_logger
from fastinfer.registry import ModelRegistry, ServedModel
from fastinfer.runtimes import Row
from fastinfer.schema import InvalidRowsError, MalformedBodyError, TooManyRowsError

log = get_logger("fastinfer.dataplane")


class DataPlane:
    def __init__(self, registry: ModelRegistry, engine: ThreadEngine) -> None:
        self.registry = registry
        self.engine = engine

    def model(self, name: str) -> ServedModel:
        """The named model, ready to predict; 404 or 503 otherwise."""
        model = self.registry.get(name)
        if model is None:
            known = sorted(m.name for m in self.registry)
            raise ModelNotFound(f"no model named {name!r}", details={"available": known})
        if not model.ready:
            raise ModelNotReady(
                f"model {name!r} is not ready: {model.reason}",
                details={"state": model.state.value},
                headers={"Retry-After": "5"},
            )
        return model

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
            raise InvalidInput(
                f"the input does not match the schema of model {model.name!r}: {exc}",
                details=[p.as_dict() for p in exc.problems],
            ) from None

    async def predict(self, model: ServedModel, rows: list[Row], request_id: str) -> dict[str, Any]:
        try:
            predictions = await self.engine.infer(model, rows)
        except Exception:
            log.exception("inference_failed", model=model.name, version=model.version)
            raise InferenceFailed(
                f"model {model.name!r} failed on this input; quote the request id when reporting it"
            ) from None
        return {
            "model": model.name,
            "version": model.version,
            "request_id": request_id,
            "predictions": predictions,
        }
