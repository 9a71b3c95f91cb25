"""The one path every protocol takes to a prediction: resolve, decode, validate, admit, infer,
observe, encode.

A protocol (v1 JSON, v2 JSON/binary, later gRPC) supplies an `Exchange`: how to turn its request
into rows for a given model version (`decode`) and how to turn the answer into its wire format
(`encode`). `DataPlane.infer` runs every other step itself, in one order, and holds the version
from lookup to the end of `encode`, so a version being retired is only stopped once nothing is
using it. It knows nothing about HTTP framing.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from fastinfer.config import Settings
from fastinfer.context import RequestContext, RequestObserver
from fastinfer.engine import DeadlineExceededError, OverloadedError, WorkItem, failed_row
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
    public_reason,
)
from fastinfer.model.hooks import HookContext, Reject
from fastinfer.model.schema import InvalidRowsError, MalformedBodyError, TooManyRowsError
from fastinfer.monitoring.monitor import Monitor
from fastinfer.observability.logging import get_logger
from fastinfer.protocols import v2
from fastinfer.repository.registry import ModelRegistry
from fastinfer.repository.served import ModelVersions, ServedModel
from fastinfer.runtimes import Prediction, Row

TIMEOUT_HEADER = "X-Request-Timeout"
log = get_logger("fastinfer.dataplane")
Encoded = TypeVar("Encoded")
Encoded_co = TypeVar("Encoded_co", covariant=True)


@dataclass(slots=True)
class Answer:
    """What a prediction produced, handed to the protocol's `encode`."""

    model: ServedModel
    rows: list[Row]
    predictions: list[Prediction]
    work: WorkItem
    request_id: str


class Exchange(Protocol[Encoded_co]):
    """A protocol's side of one prediction."""

    async def decode(self, model: ServedModel) -> list[Row]:
        """The request's rows for this version: read and parse the body. Rows may come back
        validated (`RowSchema.parse_request` validates as it parses) or raw; the data plane
        validates raw ones. Schema errors may be raised as they are: the data plane maps them."""
        ...

    validated: bool  # whether `decode` returns rows the model's schema has validated already

    def encode(self, answer: Answer) -> Encoded_co:
        """The wire form of the answer (called while the version is still held)."""
        ...


class DataPlane:
    def __init__(
        self,
        registry: ModelRegistry,
        settings: Settings,
        monitor: Monitor | None = None,
        observers: list[RequestObserver] | None = None,
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.monitor = monitor
        self.observers: list[RequestObserver] = observers or []
        self.held_refusals = 0  # 503s being held right now (see _hold)

    # -- predictions -----------------------------------------------------------------------------

    async def infer(
        self,
        name: str,
        version: str | None,
        exchange: Exchange[Encoded],
        context: RequestContext,
        timeout: str | None = None,
        *,
        timeout_s: float | None = None,
    ) -> Encoded:
        """Every step of a prediction, in order; raises ServiceError for each 4xx/5xx.

        `timeout` is the client's `X-Request-Timeout` value, if it sent one; `timeout_s`, the
        seconds a transport's own deadline leaves (gRPC's), capped alike. The deadline counts
        from now, before the body is read."""
        with self.serving(name, version) as model:
            context.model, context.version = model.name, model.version
            if timeout_s is None:
                deadline = self.deadline(timeout)
            else:
                deadline = time.monotonic() + min(timeout_s, self.settings.max_request_timeout_s)
            if model.engine is not None:
                try:  # shed before reading or validating the body: a refusal costs little
                    model.engine.admit(1, deadline)
                except OverloadedError as refused:
                    context.shed_hold = self._hold(refused)
                    raise
            rows = await self._decode(model, exchange)
            request_id = context.request_id
            if model.hooks.pre:
                rows = await self._before_hooks(model, rows, request_id)
            predictions, work = await self._run(model, rows, deadline, request_id)
            context.timing = work
            if self.monitor is not None:
                written = self.monitor.observe(
                    model, rows, predictions, request_id, context.started
                )
                if written is not None:  # a durable prediction log: answered once recorded
                    await _recorded(written, deadline)
            if model.hooks.post:  # run by the transport once the response is sent
                context.after_response = _after_hooks(model, rows, predictions, request_id)
            return exchange.encode(Answer(model, rows, predictions, work, request_id))

    def _hold(self, refused: OverloadedError) -> float:
        """How long to hold this refusal: up to its Retry-After, capped by `shed_hold_s`.

        Answered at once, a refusal still costs a whole HTTP exchange (~150 µs of a server
        process here), and clients that retry at once would spend the capacity on refusals
        (goodput fell to 12% at 4,096 such connections); held, each connection costs at most
        one refusal per hold. A load balancer's retry elsewhere waits that long too: set 0 to
        answer at once. At most `max_held_refusals` wait at a time (beyond: at once)."""
        limit = self.settings.shed_hold_s
        if limit <= 0 or self.held_refusals >= self.settings.max_held_refusals:
            return 0.0
        return min(float(refused.retry_after), limit)

    async def hold_refusal(self, seconds: float) -> None:
        """Hold a shed refusal `seconds` before the transport sends it (`_hold` says why);
        counted while held, so at most `max_held_refusals` wait at a time."""
        self.held_refusals += 1
        try:
            await asyncio.sleep(seconds)
        finally:
            self.held_refusals -= 1

    def serving(self, name: str, version: str | None = None) -> Held:
        """The named version (default: the model's default, or the split's pick for this
        request), ready to predict; 404 or 503.

        Use it as `with plane.serving(...) as model`: held until the block ends, so a version
        being retired waits for its holders."""
        return Held(self._servable(name, version))

    def _servable(self, name: str, version: str | None) -> ServedModel:
        group = self.group(name)
        model = group.choose() if version is None else group.versions.get(version)
        if model is None and version is not None:
            raise _no_version(group, version, self.registry.unloaded.get(name, {}))
        if model is None or not model.serving:
            shown = model or self.registry.resolve(name)
            reason = (shown.reason if shown else None) or "no version loaded"
            raise ModelNotReady(
                f"model {name!r} is not ready: {public_reason(reason)}",
                details={"state": shown.state.value if shown else "absent"},
                headers={"Retry-After": "5"},
            )
        return model

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

    async def _decode(self, model: ServedModel, exchange: Exchange[Encoded]) -> list[Row]:
        """The exchange's rows, validated by the model's schema: 400/413/422 naming the problem."""
        assert model.schema is not None  # a ready model has a schema
        try:
            rows = await exchange.decode(model)
            return rows if exchange.validated else model.schema.validate_rows(rows)
        except MalformedBodyError as exc:
            raise MalformedRequest(str(exc)) from None
        except TooManyRowsError as exc:
            raise PayloadTooLarge(
                str(exc), details={"rows": exc.actual, "max_rows": exc.limit}
            ) from None
        except InvalidRowsError as exc:
            raise _invalid(model, exc) from None

    async def _before_hooks(
        self, model: ServedModel, rows: list[Row], request_id: str
    ) -> list[Row]:
        """Rows after the model's pre-hooks (validated again if a hook changed them)."""
        assert model.schema is not None
        context = HookContext(model.name, model.version, request_id)
        try:
            changed = await model.hooks.before(rows, context)
        except Reject as refused:
            status = refused.status if 400 <= refused.status < 500 else 422
            raise RequestRejected(refused.message, status) from None
        if changed is None:
            return rows
        try:
            return model.schema.validate_rows(changed)
        except InvalidRowsError as exc:
            raise _invalid(model, exc) from None

    async def _run(
        self, model: ServedModel, rows: list[Row], deadline: float, request_id: str
    ) -> tuple[list[Prediction], WorkItem]:
        """Predictions for validated rows; 503/504 from the engine, 500 if the model raised."""
        engine = model.engine
        if engine is None:  # retired between lookup and now: cannot happen while held
            raise ModelNotReady(
                f"model {model.label!r} has no engine", headers={"Retry-After": "1"}
            )
        try:
            return await engine.infer(rows, deadline, request_id)
        except ServiceError:
            raise
        except Exception as exc:  # its traceback is logged by the worker that ran it
            error_id = new_error_id()
            row = failed_row(exc)  # which row of this request, when the engine narrowed it down
            log.error(
                "inference_failed",
                error_id=error_id,
                request_id=request_id,
                model=model.name,
                version=model.version,
                error=type(exc).__name__,
                row=row,
            )
            where = "this input" if row is None else f"row {row} of this request"
            raise InferenceFailed(
                f"model {model.name!r} failed on {where} (error id {error_id})",
                details={"error_id": error_id}
                if row is None
                else {"error_id": error_id, "row": row},
            ) from None

    # -- what else protocols ask of models -------------------------------------------------------

    def group(self, name: str) -> ModelVersions:
        """The model's versions; 404 naming the models there are."""
        group = self.registry.get(name)
        if group is None:
            known = self.registry.names()
            if name in self.registry.unloaded:
                raise ModelNotFound(
                    f"model {name!r} was unloaded by an operator", details={"available": known}
                )
            raise ModelNotFound(f"no model named {name!r}", details={"available": known})
        return group

    def version(self, name: str, version: str | None) -> tuple[ModelVersions, ServedModel]:
        """The named version, or the default (else the newest), in any state: to describe or
        monitor it, not to predict with it; 404."""
        group = self.group(name)
        model = self.registry.resolve(name, version)
        if model is None:
            raise _no_version(group, version, self.registry.unloaded.get(name, {}))
        return group, model

    def v2_metadata(self, name: str, version: str | None) -> dict[str, Any]:
        """The v2 model metadata document of a version, for REST and gRPC alike; 404, or 503
        while it is not ready."""
        group, model = self.version(name, version)
        if model.schema is None or model.runtime is None:
            raise ModelNotReady(f"model {name!r} version {model.version!r} is not ready")
        return v2.model_metadata(
            model.name,
            [m.version for m in group.ordered()],
            v2.platform_of(model.config.runtime),
            model.schema.fields,
            model.config.output.kind,
            model.runtime.output_labels(),
            model.runtime.output_schemas(),
        )

    # -- once answered -------------------------------------------------------------------------

    def answered(self, context: RequestContext, status: int, elapsed: float) -> None:
        """Tell the observers (access log, metrics, tracing) about a request just answered."""
        for observe in self.observers:
            observe(context, status, elapsed)


class Held:
    """A version held while in use (a class, not a generator: it is on every request)."""

    __slots__ = ("model",)

    def __init__(self, model: ServedModel) -> None:
        self.model = model

    def __enter__(self) -> ServedModel:
        self.model.in_flight += 1
        return self.model

    def __exit__(self, *_exc: object) -> None:
        self.model.in_flight -= 1


async def _recorded(written: asyncio.Future[None], deadline: float) -> None:
    """Wait, up to the request's deadline, for the durable prediction log to record its rows
    (503 if it cannot, 504 if it is too slow): a prediction is never answered unrecorded."""
    try:
        await asyncio.wait_for(written, max(0.0, deadline - time.monotonic()))
    except TimeoutError:
        raise DeadlineExceededError(
            "the deadline passed while the prediction log was writing the prediction",
            stage="prediction_log",
        ) from None


def _after_hooks(
    model: ServedModel, rows: list[Row], predictions: list[Prediction], request_id: str
) -> Callable[[], None]:
    context = HookContext(model.name, model.version, request_id)
    return lambda: model.hooks.after(rows, predictions, context)


def _invalid(model: ServedModel, exc: InvalidRowsError) -> InvalidInput:
    return InvalidInput(
        f"the input does not match the schema of model {model.name!r}: {exc}",
        details=[p.as_dict() for p in exc.problems],
    )


def _no_version(
    group: ModelVersions, version: str | None, unloaded: Container[str] = ()
) -> ModelNotFound:
    """404; a version an operator unloaded says so (it may be loaded again)."""
    if version in unloaded:
        message = f"model {group.name!r} version {version!r} was unloaded by an operator"
    else:
        message = f"model {group.name!r} has no version {version!r}"
    return ModelNotFound(message, details={"available": sorted(group.versions)})
