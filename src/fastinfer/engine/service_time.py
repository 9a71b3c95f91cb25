"""An online model of how long a batch takes: seconds ≈ fixed + per_row · rows.

The admission decision ("can this request finish before its deadline?") and Retry-After both need
to know how fast the queue drains. A per-batch average is biased by batch size (batching is the
point), so this fits the two coefficients with exponentially forgotten least squares.
"""

from __future__ import annotations


class ServiceTimeModel:
    def __init__(self, forgetting: float = 0.05) -> None:
        self._alpha = forgetting
        self._weight = 0.0
        self._n = 0.0
        self._t = 0.0
        self._nn = 0.0
        self._nt = 0.0
        self.samples = 0  # batches learned from (shown in /health's engine status)

    def observe(self, rows: int, seconds: float) -> None:
        keep = 1.0 - self._alpha
        self._weight = keep * self._weight + 1.0
        self._n = keep * self._n + rows
        self._t = keep * self._t + seconds
        self._nn = keep * self._nn + rows * rows
        self._nt = keep * self._nt + rows * seconds
        self.samples += 1

    def coefficients(self) -> tuple[float, float]:
        """(fixed seconds per call, seconds per row); both zero before any observation."""
        if self._weight == 0:
            return 0.0, 0.0
        mean_n = self._n / self._weight
        mean_t = self._t / self._weight
        variance = self._nn / self._weight - mean_n * mean_n
        if variance <= 1e-9 * max(1.0, mean_n * mean_n):
            # One batch size seen so far: attribute the time to rows, the conservative reading.
            return 0.0, mean_t / max(mean_n, 1.0)
        per_row = (self._nt / self._weight - mean_n * mean_t) / variance
        per_row = max(per_row, 0.0)
        fixed = max(mean_t - per_row * mean_n, 0.0)
        return fixed, per_row

    def batch_seconds(self, rows: int) -> float:
        fixed, per_row = self.coefficients()
        return fixed + per_row * rows

    def drain_seconds(self, rows: int, max_batch_rows: int, workers: int) -> float:
        """Time to get through `rows` queued rows with `workers` working in parallel."""
        if rows <= 0:
            return 0.0
        full, rest = divmod(rows, max_batch_rows)
        total = full * self.batch_seconds(max_batch_rows) + (
            self.batch_seconds(rest) if rest else 0
        )
        return total / max(workers, 1)
