"""A model bound by inference: each call sleeps a fixed cost plus a cost per row (the GIL released,
as a native library computing would), for the saturation curve of a slow model.

    python -m bench.models.slow OUT_DIR [--fixed-ms 10] [--per-row-ms 1] [--max-batch 16]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

MODULE = "slow_model.py"
SOURCE = '''"""Sleeps {fixed_ms} ms plus {per_row_ms} ms per row, then answers 0.0 for every row."""

import time


class SlowModel:
    def predict(self, rows):
        time.sleep(({fixed_ms} + {per_row_ms} * len(rows)) / 1000)
        return [0.0] * len(rows)
'''


def build_slow_model(
    directory: Path, *, fixed_ms: float = 10.0, per_row_ms: float = 1.0, max_batch: int = 16
) -> Path:
    """Write the model directory (python runtime, no artefact); return it."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MODULE).write_text(SOURCE.format(fixed_ms=fixed_ms, per_row_ms=per_row_ms))
    config = {
        "name": "slow",
        "version": "1",
        "runtime": "python",
        "runtime_options": {"entrypoint": "slow_model:SlowModel"},
        "code_paths": [MODULE],
        "inputs": [{"name": "x", "type": "number"}],
        "output": {"kind": "regressor"},
        "example": {"x": 1.0},
        "batching": {"max_batch_size": max_batch, "max_batch_delay_ms": 0.0},
    }
    (directory / "model.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return directory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--fixed-ms", type=float, default=10.0)
    parser.add_argument("--per-row-ms", type=float, default=1.0)
    parser.add_argument("--max-batch", type=int, default=16)
    args = parser.parse_args()
    build_slow_model(
        args.out, fixed_ms=args.fixed_ms, per_row_ms=args.per_row_ms, max_batch=args.max_batch
    )


if __name__ == "__main__":
    main()
