"""Running one server process under uvicorn, with the stop semantics orchestrators expect.

SIGTERM starts a drain: `/readyz` turns 503 and every response says `Connection: close` at once;
the listener keeps accepting for `drain_delay_s` (connections waiting in its backlog are then
accepted and answered, not reset); accepted and queued requests are answered for up to
`drain_timeout_s`; an idle keep-alive connection is closed only after a grace with nothing
received (see `protocol.py`); then the process exits 0. SIGUSR1 asks every connection to close
after its next response (the supervisor sends it when a replaced worker starts listening, so
clients spread over every worker again).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import socket
import time
from types import FrameType

import uvicorn

from fastinfer.api.service import ServiceApp
from fastinfer.config import Settings
from fastinfer.observability.logging import get_logger
from fastinfer.serving.protocol import (
    ConnectionPolicy,
    ServingProtocol,
    drain_connections,
    retire_connections,
)

log = get_logger("fastinfer.server")
_TICK_S = 1.0  # the main loop's idle cadence: the Date header is refreshed at each tick


class DrainingServer(uvicorn.Server):
    """uvicorn's server, stopping as the module docstring says, through its public hooks only:
    `handle_exit` (its signal handler), `main_loop` and `on_tick`, and the `should_exit` /
    `force_exit` flags it polls.

    uvicorn's own main loop wakes every 0.1 s to poll those flags (and refreshes the Date header
    every tenth time): ten wake-ups a second in an idle process. Here it wakes once a second
    (the Date header's resolution), at the drain deadline, and at once when `handle_exit` sets a
    flag, so a stop is handled as soon as before.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        app: ServiceApp,
        policy: ConnectionPolicy,
        drain_delay_s: float,
        *,
        announce_listening: bool = False,
    ) -> None:
        super().__init__(config)
        self._app = app
        self._policy = policy
        self._drain_delay_s = drain_delay_s
        self._announce_listening = announce_listening
        self._exit_at: float | None = None
        self._drain_signal: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, self._rebalance)
        if self._announce_listening and not self.should_exit:
            # Its supervisor tells the others to hand connections over.
            os.kill(os.getppid(), signal.SIGUSR1)

    def _rebalance(self) -> None:
        if not self._policy.draining:
            count = retire_connections(self.server_state.connections)
            log.info("connections_rebalanced", connections=count)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Connections the kernel completed into the listener's backlog have sent (or are
        # sending) a request: accept them before the listener closes, which would reset them.
        for _ in range(3):
            await asyncio.sleep(0)
        grpc = getattr(self._app.state, "grpc", None)
        if grpc is not None:  # gRPC drains beside HTTP: no new calls, those in flight finish
            grpc.begin_stop()
        await super().shutdown(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # A signal handler: it may interrupt the main thread anywhere, even inside a logging
        # call holding the log queue's lock, so it only sets flags (and wakes the main loop,
        # which takes no lock). on_tick does the rest.
        self._set_exit_flags(sig)
        self._wake_main_loop()

    def _set_exit_flags(self, sig: int) -> None:
        engine = getattr(self._app.state, "engine", None)
        self._policy.draining = True  # every response from now on says Connection: close
        if engine is not None and not engine.draining:
            engine.draining = True  # /readyz answers 503 from now on
            self._drain_signal = sig
            if self._drain_delay_s > 0:
                self._exit_at = time.monotonic() + self._drain_delay_s
                return
        # uvicorn's own handler also records the signal, to re-raise it once shut down, so the
        # process would die "by signal". A stop that completed its drain is a clean exit
        # (status 0): the same flags, without the record.
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True  # a second Ctrl+C: stop waiting for connections
        else:
            self.should_exit = True

    def _wake_main_loop(self) -> None:
        """Have the main loop tick now. `call_soon_threadsafe` appends to the loop's queue and
        writes its wake-up pipe: what asyncio itself does from a signal."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            loop.call_soon_threadsafe(wake.set)

    async def main_loop(self) -> None:
        """uvicorn's `main_loop`, ticking every `_TICK_S` rather than every 0.1 s, and also
        at the drain deadline and whenever `handle_exit` wakes it."""
        self._loop = asyncio.get_running_loop()
        self._wake = wake = asyncio.Event()
        counter = 0  # on_tick counts tenths of a second: each tick here is a whole second
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 10) % 864000
            timeout = _TICK_S
            if self._exit_at is not None:
                timeout = min(timeout, max(0.0, self._exit_at - time.monotonic()))
            if not wake.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout)
            wake.clear()
            should_exit = await self.on_tick(counter)

    async def on_tick(self, counter: int) -> bool:
        if self._drain_signal is not None:
            log.info("draining", signal=self._drain_signal, delay_s=self._drain_delay_s)
            self._drain_signal = None
            drain_connections(self.server_state.connections)
        if self._exit_at is not None and time.monotonic() >= self._exit_at:
            self.should_exit = True
        return await super().on_tick(counter)


def run_server(
    app: ServiceApp,
    settings: Settings,
    sockets: list[socket.socket] | None = None,
    *,
    announce_listening: bool = False,
) -> None:
    """Serve `app` until stopped. `announce_listening`: a worker of a supervisor, which tells it
    (SIGUSR1) once it listens, so the other workers hand connections over."""
    policy = ConnectionPolicy(settings.max_header_bytes, settings.header_read_timeout_s)
    config = uvicorn.Config(
        app,
        http=ServingProtocol.with_policy(policy),
        ws="none",
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        server_header=False,
        date_header=True,
        lifespan="on",
        # uvicorn takes whole seconds, and None waits for ever: 0.5 s is 1 s here, 0 is 0.
        timeout_graceful_shutdown=math.ceil(settings.drain_timeout_s),
        # Idle keep-alive connections close after 5 s. The request head's size and time are
        # bounded by the protocol (431, 408); slow bodies by body_read_timeout_s (408).
        timeout_keep_alive=5,
    )
    server = DrainingServer(
        config, app, policy, settings.drain_delay_s, announce_listening=announce_listening
    )
    server.run(sockets=sockets)
