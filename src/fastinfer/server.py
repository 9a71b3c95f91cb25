"""Running the app under uvicorn, with the process semantics orchestrators expect."""

from __future__ import annotations

import socket

import uvicorn
from fastapi import FastAPI

from fastinfer.config import Settings


class _Server(uvicorn.Server):
    async def _serve(self, sockets: list[socket.socket] | None = None) -> None:
        await super()._serve(sockets)
        # uvicorn re-raises a captured SIGTERM/SIGINT after shutting down, so the process dies
        # "by signal". A stop that completed its shutdown is a clean exit: status 0.
        self._captured_signals.clear()


def run_server(app: FastAPI, settings: Settings) -> None:
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        server_header=False,
        date_header=True,
        lifespan="on",
    )
    _Server(config).run()
