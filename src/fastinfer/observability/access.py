"""The access log: one line per answered request, from its context (a RequestObserver).

Probes and scrapes that succeed are logged at DEBUG: frequent, and they would drown the rest.
"""

from __future__ import annotations

import logging
from typing import Any

from fastinfer.context import RequestContext
from fastinfer.observability.logging import emit_record

QUIET_PATHS = frozenset({"/livez", "/readyz", "/health", "/metrics", "/favicon.ico"})


def log_access(context: RequestContext, status: int, elapsed: float) -> None:
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
    quiet = context.path in QUIET_PATHS and status < 400
    emit_record("fastinfer.access", logging.DEBUG if quiet else logging.INFO, "request", fields)
