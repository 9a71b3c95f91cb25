"""The access log: one line per answered request, from its context (a RequestObserver).

Probes and scrapes that succeed are logged at DEBUG: frequent, and they would drown the rest.
Refusals under overload (503, 429) are sampled: at most `SHED_LINES_PER_SECOND` a second per
process, each saying how many were left out since the last (`unlogged`). Under a flood of
immediately retrying clients a line per refusal cost more than the refusal itself (260 MB of log
in 2 minutes); the metrics still count every one.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastinfer.context import RequestContext
from fastinfer.observability.logging import emit_record

QUIET_PATHS = frozenset({"/livez", "/readyz", "/health", "/metrics", "/favicon.ico"})
SHED_STATUSES = frozenset({429, 503})
SHED_LINES_PER_SECOND = 10


class _ShedSampler:
    """A per-second budget of access-log lines for refusals under overload."""

    def __init__(self, per_second: int) -> None:
        self.per_second = per_second
        self._second = 0
        self._logged = 0
        self.unlogged = 0

    def allow(self) -> bool:
        second = int(time.monotonic())
        if second != self._second:
            self._second, self._logged = second, 0
        if self._logged < self.per_second:
            self._logged += 1
            return True
        self.unlogged += 1
        return False


_shed = _ShedSampler(SHED_LINES_PER_SECOND)


def log_access(context: RequestContext, status: int, elapsed: float) -> None:
    unlogged = 0
    if status in SHED_STATUSES:
        if not _shed.allow():
            return
        unlogged, _shed.unlogged = _shed.unlogged, 0
    fields: dict[str, Any] = {
        "method": context.method,
        "path": context.path,
        "status": status,
        "latency_ms": round(elapsed * 1000, 3),
        "request_id": context.request_id,
    }
    if context.model is not None:
        fields["model"] = context.model
        fields["version"] = context.version
    if context.api_key is not None:
        fields["api_key"] = context.api_key  # the key's name; the key is never kept
    if unlogged:
        fields["unlogged"] = unlogged  # refusals like this one left out since the last line
    quiet = context.path in QUIET_PATHS and status < 400
    emit_record("fastinfer.access", logging.DEBUG if quiet else logging.INFO, "request", fields)
