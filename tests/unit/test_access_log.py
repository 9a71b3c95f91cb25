"""The access log samples refusals under overload and keeps every other line."""

from __future__ import annotations

from typing import Any

import pytest

from fastinfer.context import RequestContext
from fastinfer.observability import access


@pytest.fixture
def lines(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    written: list[dict[str, Any]] = []
    monkeypatch.setattr(access, "emit_record", lambda _n, _l, _e, fields: written.append(fields))
    monkeypatch.setattr(access, "_shed", access._ShedSampler(access.SHED_LINES_PER_SECOND))
    return written


def _context() -> RequestContext:
    return RequestContext("id", 0.0, "POST", "/v1/models/m/predict", [])


def test_refusals_are_sampled_and_say_how_many_were_left_out(
    lines: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [100.2]
    monkeypatch.setattr(access.time, "monotonic", lambda: now[0])
    for _ in range(500):
        access.log_access(_context(), 503, 0.001)
    assert len(lines) == access.SHED_LINES_PER_SECOND
    assert all("unlogged" not in line for line in lines)
    now[0] = 101.3  # the next second
    access.log_access(_context(), 429, 0.001)
    assert lines[-1]["status"] == 429
    assert lines[-1]["unlogged"] == 500 - access.SHED_LINES_PER_SECOND


def test_answers_and_other_errors_are_all_logged(lines: list[dict[str, Any]]) -> None:
    for status in [200] * 300 + [422] * 300 + [500] * 30:
        access.log_access(_context(), status, 0.001)
    assert len(lines) == 630
