"""The log writer thread: every queued line is written, in order, by the time logging stops."""

from __future__ import annotations

import subprocess
import sys

import orjson

SCRIPT = """
import logging
from fastinfer.observability.logging import (
    configure_logging, emit_record, flush_logging, get_logger
)

configure_logging("info", "json")
log = get_logger("test")
for i in range(1500):  # more than one burst
    log.info("line", i=i)
    emit_record("test.hot", logging.INFO, "hot", {"i": i})
configure_logging("info", "json")  # a second configuration writes out the first's lines
log.info("after", i=-1)
flush_logging()
"""


def test_every_line_is_written_in_order_before_logging_stops() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, check=True, timeout=60
    )
    lines = [orjson.loads(line) for line in done.stderr.splitlines()]
    assert [(line["event"], line["i"]) for line in lines] == [
        *((event, i) for i in range(1500) for event in ("line", "hot")),
        ("after", -1),
    ]
    assert all(line["timestamp"].endswith("Z") for line in lines)
