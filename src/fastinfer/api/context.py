"""Request ids: the client's, if usable, else a new one; and the context of a FastAPI route's
request (`fastinfer.context.RequestContext`, which the transport stored in the scope)."""

from __future__ import annotations

import itertools
import os
import re
import secrets
import time

from starlette.types import Scope

from fastinfer.context import RequestContext, context_of

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")


class _RequestIds:
    """32 hex characters: a random per-process prefix and a counter (uuid4 costs 10x more).

    The prefix is drawn again in every forked child, so ids never repeat across workers.
    """

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._counter = itertools.count(secrets.randbelow(1 << 32))

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter) & 0xFFFFFFFFFFFFFFFF:016x}"


_ids = _RequestIds()


def request_id_of(scope: Scope) -> str:
    context = context_of(scope)
    return context.request_id if context is not None else ""


def context_for(scope: Scope) -> RequestContext:
    """The request's context; a new one for a scope the service app never saw (tests that
    call the FastAPI app directly)."""
    context = context_of(scope)
    if context is None:
        context = RequestContext.of_scope(scope, incoming_request_id(scope), time.perf_counter())
    return context


def incoming_request_id(scope: Scope) -> str:
    """The client's `X-Request-ID` if it is usable, else a new one (never echo junk back)."""
    for key, value in scope["headers"]:
        if key == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _VALID_REQUEST_ID.match(candidate):
                return candidate
            break
    return _ids.next()
