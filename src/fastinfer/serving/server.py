"""Running one server process under uvicorn, with the stop semantics orchestrators expect.

SIGTERM starts a drain: `/readyz` turns 503 at once, new connections are refused (after
`drain_delay_s`, if set), accepted and queued requests are still answered for up to
`drain_timeout_s`, then the process exits 0.
"""

from __future__ import annotations

import signal
import socket
import time
from types import FrameType

import uvicorn

from fastinfer.api.service import ServiceApp
from fastinfer.config import Settings
from fastinfer.observability.logging import get_logger

log = get_logger("fastinfer.server")


class DrainingServer(uvicorn.Server):
    """uvicorn's server, stopping as the module docstring says, through its public hooks only:
    `handle_exit` (its signal handler), `on_tick` (its main loop, every 0.1 s), and the
    `should_exit` / `force_exit` flags it polls."""

    def __init__(self, config: uvicorn.Config, app: ServiceApp, drain_delay_s: float) -> None:
        super().__init__(config)
        self._app = app
        self._drain_delay_s = drain_delay_s
        self._exit_at: float | None = None
        self._drain_signal: int | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # A signal handler: it may interrupt the main thread anywhere, even inside a logging
        # call holding the log queue's lock, so it only sets flags. on_tick does the rest.
        engine = getattr(self._app.state, "engine", None)
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
        if self._exit_at is not None and time.monotonic() >= self._exit_at:
            self.should_exit = True
        return await super().on_tick(counter)


def run_server(
    app: ServiceApp, settings: Settings, sockets: list[socket.socket] | None = None
) -> None:
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        server_header=False,
        date_header=True,
        lifespan="on",
        timeout_graceful_shutdown=int(settings.drain_timeout_s) or None,
        # Idle keep-alive connections close after 5 s; with the h11 parser a request head
        # larger than 16 KiB is refused. Slow bodies are cut by body_read_timeout_s (408).
        timeout_keep_alive=5,
        h11_max_incomplete_event_size=16 * 1024,
    )
    DrainingServer(config, app, settings.drain_delay_s).run(sockets=sockets)
