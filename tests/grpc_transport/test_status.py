"""The one table from REST errors to gRPC codes, and the trailing metadata of a refusal."""

from __future__ import annotations

import pytest

from fastinfer.engine import DeadlineExceededError, OverloadedError
from fastinfer.errors import InvalidInput, ModelNotFound, ModelNotReady
from fastinfer.protocols.v2_tensors import V2Error, V2TooManyRows
from fastinfer.repository.changes import ChangeRefused
from fastinfer.security.keys import Forbidden, RateLimited, Unauthorized

grpc = pytest.importorskip("grpc")
from fastinfer.grpc.status import refusal, status_code  # noqa: E402 - needs grpcio

Code = grpc.StatusCode


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (V2Error("bad tensor"), Code.INVALID_ARGUMENT),
        (V2TooManyRows(2000, 1024), Code.RESOURCE_EXHAUSTED),
        (InvalidInput("rows do not match"), Code.INVALID_ARGUMENT),
        (ModelNotFound("no model"), Code.NOT_FOUND),
        (Unauthorized("no key"), Code.UNAUTHENTICATED),
        (Forbidden("no scope"), Code.PERMISSION_DENIED),
        (ModelNotReady("loading", headers={"Retry-After": "5"}), Code.UNAVAILABLE),
        (DeadlineExceededError("late", stage="queue"), Code.DEADLINE_EXCEEDED),
        (ChangeRefused(409, "conflict", "busy"), Code.FAILED_PRECONDITION),
        (KeyError("a bug"), Code.INTERNAL),
    ],
)
def test_each_refusal_has_its_code(error: Exception, code: grpc.StatusCode) -> None:
    assert refusal(error, "rid", "eid").code == code


def test_refusals_that_say_when_to_retry_carry_retry_after() -> None:
    shed = refusal(OverloadedError("busy", reason="queue_full", retry_after=2), "rid", "eid")
    assert shed.code == Code.UNAVAILABLE
    assert dict(shed.metadata) == {
        "retry-after": "2",
        "fastinfer-error-code": "overloaded",
        "x-request-id": "rid",
    }
    limited = refusal(RateLimited("slow down", headers={"Retry-After": "1"}), "rid", "eid")
    assert limited.code == Code.RESOURCE_EXHAUSTED
    assert dict(limited.metadata)["retry-after"] == "1"


def test_a_bug_shows_its_error_id_never_its_text() -> None:
    bug = refusal(RuntimeError("secret /etc/path detail"), "rid", "e1d")
    assert bug.message == "internal error (error id e1d, request id rid)"
    assert bug.status == 500


def test_unlisted_statuses_fall_back_by_class() -> None:
    assert status_code(418) == Code.INVALID_ARGUMENT
    assert status_code(507) == Code.INTERNAL
