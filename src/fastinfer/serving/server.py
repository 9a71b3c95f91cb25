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


class DrainingServer(uvicorn.Server):
    """uvicorn's server, stopping as the module docstring says, through its public hooks only:
    `handle_exit` (its signal handler), `on_tick` (its main loop, every 0.1 s), and the
    `should_exit` / `force_exit` flags it polls."""

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
        # call holding the log queue's lock, so it only sets flags. on_tick does the rest.
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
