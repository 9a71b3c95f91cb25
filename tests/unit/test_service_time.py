"""The service-time model behind admission and Retry-After: seconds ≈ fixed + per_row · rows."""

from __future__ import annotations

import random

import pytest

from fastinfer.engine.service_time import ServiceTimeModel

FIXED, PER_ROW = 0.004, 0.0002


def feed(model: ServiceTimeModel, fixed: float, per_row: float, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    for _ in range(n):
        rows = rng.choice([1, 2, 5, 16, 64, 256])
        noise = 1 + rng.uniform(-0.05, 0.05)
        model.observe(rows, (fixed + per_row * rows) * noise)


def test_before_any_observation_everything_is_free() -> None:
    model = ServiceTimeModel()
    assert model.coefficients() == (0.0, 0.0)
    assert model.batch_seconds(100) == 0.0
    assert model.drain_seconds(1000, 64, 1) == 0.0
    assert model.samples == 0


def test_exact_samples_give_back_the_two_coefficients() -> None:
    model = ServiceTimeModel()
    for rows in (1, 8, 3, 64, 1, 32):
        model.observe(rows, FIXED + PER_ROW * rows)
    fixed, per_row = model.coefficients()
    assert fixed == pytest.approx(FIXED, rel=1e-6)
    assert per_row == pytest.approx(PER_ROW, rel=1e-6)
    assert model.batch_seconds(100) == pytest.approx(FIXED + 100 * PER_ROW, rel=1e-6)
    assert model.samples == 6


def test_noisy_samples_converge() -> None:
    model = ServiceTimeModel()
    feed(model, FIXED, PER_ROW, 500)
    fixed, per_row = model.coefficients()
    assert fixed == pytest.approx(FIXED, rel=0.15)
    assert per_row == pytest.approx(PER_ROW, rel=0.05)


def test_it_forgets_a_past_speed() -> None:
    """A model that got slower (a noisy neighbour, a bigger input) is tracked within a few dozen
    batches: old samples are forgotten exponentially."""
    model = ServiceTimeModel()
    feed(model, FIXED, PER_ROW, 300)
    feed(model, 10 * FIXED, 3 * PER_ROW, 300, seed=1)
    fixed, per_row = model.coefficients()
    assert fixed == pytest.approx(10 * FIXED, rel=0.15)
    assert per_row == pytest.approx(3 * PER_ROW, rel=0.05)


def test_one_batch_size_seen_puts_all_the_time_on_rows() -> None:
    """With one size there is no slope to fit: the conservative reading charges it per row
    (the self-test's one-row sample makes a 100-row request look 100 times as long)."""
    model = ServiceTimeModel()
    model.observe(1, 0.5)
    assert model.coefficients() == (0.0, 0.5)
    model.observe(4, 2.0)  # same per-row time at another size: no fixed part
    model.observe(4, 2.0)
    fixed, per_row = model.coefficients()
    assert fixed == pytest.approx(0.0, abs=1e-9)
    assert per_row == pytest.approx(0.5)


def test_coefficients_are_never_negative() -> None:
    """Bigger batches measured faster (noise, warm caches) must not give a negative per-row
    time, which would make a big queue look free."""
    model = ServiceTimeModel()
    model.observe(1, 0.010)
    model.observe(100, 0.001)
    fixed, per_row = model.coefficients()
    assert per_row == 0.0
    assert fixed > 0
    assert model.drain_seconds(10_000, 100, 1) > 0


def test_drain_time_counts_full_batches_and_the_rest_shared_by_workers() -> None:
    model = ServiceTimeModel()
    for rows in (1, 10):
        model.observe(rows, 1.0 + 0.1 * rows)  # 1 s per call + 0.1 s per row
    # 25 rows in batches of 10: 10 + 10 + 5 → 2·(1 + 1) + (1 + 0.5)
    assert model.drain_seconds(25, 10, 1) == pytest.approx(5.5)
    assert model.drain_seconds(25, 10, 2) == pytest.approx(2.75)
    assert model.drain_seconds(20, 10, 1) == pytest.approx(4.0)
    assert model.drain_seconds(0, 10, 4) == 0.0
    assert model.drain_seconds(5, 10, 0) == pytest.approx(1.5)  # no workers counted as one
