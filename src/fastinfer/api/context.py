"""Per-request context: the request id, carried in the ASGI scope's state."""

from __future__ import annotations

import itertools
import os
import re
import secrets

from starlette.types import Scope

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
    state = scope.get("state") or {}
    return str(state.get("request_id", ""))


def incoming_request_id(scope: Scope) -> str:
    """The client's `X-Request-ID` if it is usable, else a new one (never echo junk back)."""
    for key, value in scope["headers"]:
        if key == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _VALID_REQUEST_ID.match(candidate):
                return candidate
            break
    return _ids.next()
