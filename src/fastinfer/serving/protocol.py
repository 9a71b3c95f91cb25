"""The HTTP/1.1 connection: uvicorn's httptools protocol with the limits and the connection
lifecycle a production server needs, whatever the client does.

* **Head limits.** The request line and headers together may take `max_header_bytes` (431,
  counted as bytes arrive, so memory stays flat however large the header) and must arrive within
  `header_read_timeout_s` of their first byte (408), however slowly they trickle. uvicorn's own
  16 KiB limit applies to h11 only; with httptools nothing bounded the head.
* **Lingering close.** A response that closes the connection before the request body was read
  (an early 413 or 408) is followed by a half-close and a bounded read-and-discard of what the
  client is still sending (`_LINGER_S`, nothing kept): closing with unread data makes the kernel
  reset the connection, and a client that sends its whole body before reading (urllib,
  `requests`, most SDKs) would never see the answer.
* **Drain.** From the moment a drain starts, every response says `Connection: close`, a request
  already running answers with it too, and an idle connection is closed only after
  `_DRAIN_IDLE_GRACE_S` with nothing received: the grace covers a request already on its way
  (closing at once loses it, the client sees a reset).
* **Rebalance.** `retire_all()` makes each connection's next response say `Connection: close`
  (idle ones are not touched, so nothing races their next request): after a worker is replaced,
  clients reconnect and the kernel spreads them over every worker again.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from fastinfer.api.errors import error_json
from fastinfer.context import CLIENT_GONE, SCOPE_KEY
from fastinfer.errors import new_error_id
from fastinfer.observability.logging import get_logger

log = get_logger("fastinfer.http")

_LINGER_S = 5.0  # the most a closing connection keeps reading what the client still sends
_LINGER_IDLE_S = 1.0  # ... and the most it waits for the next byte of it
_DRAIN_IDLE_GRACE_S = 1.0  # an idle connection stays open this long into a drain
_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class ConnectionPolicy:
    """What every connection of a server process shares: its limits and whether it drains."""

    def __init__(self, max_header_bytes: int, header_read_timeout_s: float) -> None:
        self.max_header_bytes = max_header_bytes
        self.header_read_timeout_s = header_read_timeout_s
        self.draining = False


class _RefusedError(Exception):
    """Raised inside a parser callback to stop parsing; data_received answers it."""


class ServingProtocol(HttpToolsProtocol):
    """One client connection (see the module docstring)."""

    policy: ClassVar[ConnectionPolicy]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0  # bytes received since the last head completed
        self._in_body = False  # between the end of a head and the end of its message
        self._head_timer: asyncio.TimerHandle | None = None
        self._refusal: tuple[int, str, str, dict[str, Any]] | None = None
        self._retire = False  # the next response says Connection: close
        self._lingering = False
        self._linger_timer: asyncio.TimerHandle | None = None
        self._linger_until = 0.0
        self._drain_timer: asyncio.TimerHandle | None = None
        self._closing_transport: _ClosingTransport | None = None
        self._task: asyncio.Task[None] | None = None  # the running request's

    @classmethod
    def with_policy(cls, policy: ConnectionPolicy) -> type[ServingProtocol]:
        """A protocol class for one server (uvicorn instantiates it per connection)."""
        return type("ServingProtocol", (cls,), {"policy": policy})

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._closing_transport = _ClosingTransport(self)
        # A connection that never sends a whole head is closed like a trickling one.
        self._arm_head_timer()
        if self.policy.draining:  # accepted from the backlog as the drain began
            self.begin_drain()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._head_timer, self._linger_timer, self._drain_timer):
            if timer is not None:
                timer.cancel()
        cycle, task = self.cycle, self._task
        if cycle is not None and not cycle.response_complete and task is not None:
            context = cycle.scope.get(SCOPE_KEY)
            if getattr(context, "cancel_on_disconnect", False) and not task.done():
                task.cancel(CLIENT_GONE)  # nobody will read the answer: stop computing it
        super().connection_lost(exc)

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        # uvicorn's, keeping the task: a disconnect may cancel it (connection_lost).
        task = self.loop.create_task(cycle.run_asgi(app))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)
        self._task = task

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            self._discard()
            return
        if self._drain_timer is not None:  # a request arrived in the drain's grace: serve it
            self._drain_timer.cancel()
            self._drain_timer = None
        if not self._in_body:
            self._head_bytes += len(data)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            return  # served as a plain request (no WebSocket here); what follows is not HTTP
        except httptools.HttpParserError:
            if self._refusal is None:
                self._refusal = (400, "malformed_request", "invalid HTTP request", {})
            self._answer_refusal()
            return
        if not self._in_body and self._head_bytes > self.policy.max_header_bytes:
            self._refuse_head_size()
            return
        if not self._in_body and self._head_timer is None and self._head_bytes:
            self._arm_head_timer()

    def eof_received(self) -> None:
        if self._lingering:
            self._close_now()

    # -- parser callbacks --------------------------------------------------------------------

    def on_headers_complete(self) -> None:
        limit = self.policy.max_header_bytes
        # The bytes received so far bound the head: count it exactly only when they exceed it.
        if self._head_bytes > limit and self._head_size() > limit:
            self._refusal = self._head_size_refusal()
            raise _RefusedError
        self._in_body = True
        self._head_bytes = 0
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().on_headers_complete()
        cycle = self.cycle
        if self._retire or self.policy.draining:
            cycle.keep_alive = False
        cycle.transport = self._closing_transport  # type: ignore[assignment]

    def _head_size(self) -> int:
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def on_message_complete(self) -> None:
        self._in_body = False
        super().on_message_complete()

    # -- what the server asks of every connection --------------------------------------------

    def shutdown(self) -> None:
        """uvicorn's stop: answer what runs with Connection: close; close an idle connection
        only after the drain's grace (a request may be on its way)."""
        self.begin_drain()

    def begin_drain(self) -> None:
        self._retire = True
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False
        elif self._drain_timer is None and not self._in_body and self._head_bytes == 0:
            self._drain_timer = self.loop.call_later(_DRAIN_IDLE_GRACE_S, self._close_if_idle)

    def retire(self) -> None:
        """The next response closes this connection (its client reconnects, maybe elsewhere)."""
        self._retire = True
        if self.cycle is not None and not self.cycle.response_started:
            self.cycle.keep_alive = False

    def on_response_complete(self) -> None:
        if self._lingering:  # closing: no keep-alive timer, no pipelined request started
            self.server_state.total_requests += 1
            return
        super().on_response_complete()
        if self.policy.draining and not self.transport.is_closing() and not self.pipeline:
            self.begin_drain()  # kept alive by a client asking for it: still, not forever

    # -- closing -----------------------------------------------------------------------------

    def close_after_response(self) -> None:
        """The response said Connection: close. If the client may still be sending (its body
        was not read), half-close and discard what comes for a bounded time instead of
        resetting the connection under the answer."""
        if self.transport.is_closing():
            return
        if not self._in_body:
            self.transport.close()
            return
        self._start_lingering()

    def _start_lingering(self) -> None:
        self._lingering = True
        self._in_body = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self.flow.resume_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._linger_until = self.loop.time() + _LINGER_S
        self._linger_timer = self.loop.call_later(_LINGER_IDLE_S, self._close_now)

    def _discard(self) -> None:
        if self._linger_timer is not None:
            self._linger_timer.cancel()
        wait = min(_LINGER_IDLE_S, self._linger_until - self.loop.time())
        if wait <= 0:
            self._close_now()
        else:
            self._linger_timer = self.loop.call_later(wait, self._close_now)

    def _close_now(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    def _close_if_idle(self) -> None:
        self._drain_timer = None
        idle = self.cycle is None or self.cycle.response_complete
        if idle and not self._in_body and self._head_bytes == 0 and not self.pipeline:
            self._close_now()

    # -- refusals ----------------------------------------------------------------------------

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(
            self.policy.header_read_timeout_s, self._head_timed_out
        )

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_body or self._lingering or self.transport.is_closing():
            return
        if self._head_bytes == 0 and (self.cycle is not None):
            # Idle between requests: uvicorn's keep-alive timeout owns this case.
            return
        if self._head_bytes == 0:
            self._close_now()  # connected, never sent a byte: nothing to answer
            return
        timeout = self.policy.header_read_timeout_s
        self._refuse(
            408,
            "request_timeout",
            f"the request head did not arrive within {timeout:g} seconds",
            {"header_read_timeout_s": timeout},
        )

    def _head_size_refusal(self) -> tuple[int, str, str, dict[str, Any]]:
        limit = self.policy.max_header_bytes
        return (
            431,
            "headers_too_large",
            f"the request line and headers exceed {limit} bytes",
            {"max_header_bytes": limit},
        )

    def _refuse_head_size(self) -> None:
        self._refusal = self._head_size_refusal()
        self._answer_refusal()

    def _refuse(self, status: int, code: str, message: str, details: dict[str, Any]) -> None:
        self._refusal = (status, code, message, details)
        self._answer_refusal()

    def _answer_refusal(self) -> None:
        """Answer a request refused before it reached the app, in the service's error shape,
        then close (lingering: the client may still be sending)."""
        assert self._refusal is not None
        status, code, message, details = self._refusal
        request_id = new_error_id()
        body = error_json(code, message, details, request_id)
        head = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status])]
        for name, value in self.server_state.default_headers:
            head.append(name + b": " + value + b"\r\n")
        head.append(
            b"content-type: application/json\r\nx-content-type-options: nosniff\r\n"
            b"x-request-id: " + request_id.encode() + b"\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
        )
        log.info("request_refused", status=status, code=code, client=self.client)
        if self.transport.is_closing():
            return
        self.transport.write(b"".join(head) + body)
        self._in_body = True  # whatever follows is unread request data
        self._start_lingering()


class _ClosingTransport:
    """The transport as a request's response cycle sees it: its close goes through the
    connection's lingering close."""

    __slots__ = ("_protocol", "_transport")

    def __init__(self, protocol: ServingProtocol) -> None:
        self._protocol = protocol
        self._transport = protocol.transport

    def write(self, data: bytes) -> None:
        self._transport.write(data)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self._protocol.close_after_response()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)


def retire_connections(connections: set[Any]) -> int:
    """Ask every connection to close after its next response; the number asked."""
    count = 0
    for connection in list(connections):
        if isinstance(connection, ServingProtocol):
            connection.retire()
            count += 1
    return count


def drain_connections(connections: set[Any]) -> None:
    for connection in list(connections):
        if isinstance(connection, ServingProtocol):
            connection.begin_drain()
