"""`run_batch`, the worker's one model call per batch, and its bisection when the call fails."""

from __future__ import annotations

import math
from typing import Any, cast

import pytest

from fastinfer.engine.work import WorkItem
from fastinfer.engine.workers import run_batch
from fastinfer.runtimes import Prediction, Row
from tests.unit.fake_engine import FakeRuntime, rows


def items(*requests: list[Row]) -> list[WorkItem]:
    """Work items as a worker gets them (run_batch never touches the future)."""
    return [
        WorkItem(r, deadline=0.0, request_id=f"r{i}", future=cast(Any, None), enqueued_at=0.0)
        for i, r in enumerate(requests)
    ]


def test_a_healthy_batch_is_one_call_and_each_request_gets_its_own_rows() -> None:
    runtime = FakeRuntime()
    outcome = run_batch(runtime, ["x"], items(rows(1), rows(2, 3), rows(4)))
    assert outcome.calls == 1
    assert outcome.rows == 4
    assert outcome.results == [[{"value": 1}], [{"value": 2}, {"value": 3}], [{"value": 4}]]
    assert outcome.seconds >= 0
    assert runtime.calls == [[1, 2, 3, 4]]


@pytest.mark.parametrize("size", [2, 4, 8, 16, 32])
def test_one_poisoned_request_costs_two_calls_per_halving(size: int) -> None:
    """Bisection isolates one failing request in 1 + 2·log2(n) calls, not n."""
    runtime = FakeRuntime()
    bad = size // 3
    outcome = run_batch(runtime, ["x"], items(*(rows(i, poison=(i == bad)) for i in range(size))))
    assert outcome.calls == 1 + 2 * int(math.log2(size))
    for i, result in enumerate(outcome.results):
        if i == bad:
            assert isinstance(result, ValueError)
        else:
            assert result == [{"value": i}]


def test_several_poisoned_requests_each_get_their_own_error() -> None:
    runtime = FakeRuntime()
    poisoned = {1, 6}
    outcome = run_batch(runtime, ["x"], items(*(rows(i, poison=(i in poisoned)) for i in range(8))))
    failed = {i for i, r in enumerate(outcome.results) if isinstance(r, BaseException)}
    assert failed == poisoned
    answered = [r for r in outcome.results if not isinstance(r, BaseException)]
    assert answered == [[{"value": i}] for i in range(8) if i not in poisoned]
    assert outcome.calls < 2 * 8 - 1  # fewer than trying every request alone after a failure


class ShortRuntime(FakeRuntime):
    """A broken model: one prediction fewer than the rows it was given."""

    def predict(self, rows: list[Row], columns: list[str]) -> list[Prediction]:
        return super().predict(rows, columns)[:-1]


def test_a_model_that_answers_the_wrong_number_of_rows_fails_every_request() -> None:
    """Misaligned predictions would give requests each other's answers; they are errors."""
    outcome = run_batch(ShortRuntime(), ["x"], items(rows(1), rows(2, 3)))
    assert len(outcome.results) == 2
    for result in outcome.results:
        assert isinstance(result, RuntimeError)
        assert "predictions for" in str(result)
    assert outcome.calls == 3  # the batch, then each request alone


def test_a_failing_request_names_the_row_the_model_failed_on() -> None:
    """Its 500 said only "failed on this input": the rows of the failing request are bisected
    too, so the answer can say which row (issue 16)."""
    from fastinfer.engine import failed_row

    runtime = FakeRuntime()
    request = [row for i in range(8) for row in rows(i, poison=(i == 5))]
    outcome = run_batch(runtime, ["x"], items(rows(100), request))
    assert outcome.results[0] == [{"value": 100}]
    error = outcome.results[1]
    assert isinstance(error, ValueError)  # what the model raised, unchanged
    assert failed_row(error) == 5
    alone = run_batch(runtime, ["x"], items(rows(3, poison=True)))
    assert failed_row(cast(BaseException, alone.results[0])) == 0
    assert alone.calls == 1  # a one-row request needs no search
    wrong = run_batch(ShortRuntime(), ["x"], items(rows(2, 3)))
    assert failed_row(cast(BaseException, wrong.results[0])) is None  # no row is to blame
