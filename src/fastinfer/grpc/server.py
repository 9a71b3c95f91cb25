"""The gRPC server of one server process: made inside its event loop, after the fork (grpcio's
threads and polling do not survive a fork), on the same port in every process (SO_REUSEPORT,
as the HTTP listeners: the kernel spreads connections over them), stopped with a grace so the
calls in flight finish."""

from __future__ import annotations

import asyncio

import grpc

from fastinfer.config import Settings
from fastinfer.grpc.proto import grpc_service_pb2_grpc
from fastinfer.grpc.servicer import InferenceServicer
from fastinfer.observability.logging import get_logger

log = get_logger("fastinfer.grpc")


class GrpcTransport:
    """Starts, and stops once, one process's `grpc.aio` server."""

    def __init__(self, servicer: InferenceServicer, settings: Settings) -> None:
        self._servicer = servicer
        self._settings = settings
        self._server: grpc.aio.Server | None = None
        self._stopping: asyncio.Future[None] | None = None
        self.port: int | None = None

    async def start(self) -> int:
        """Listen on `grpc_port` (the port bound; RuntimeError when it cannot be bound)."""
        settings = self._settings
        assert settings.grpc_port is not None
        server = grpc.aio.server(
            options=[
                ("grpc.so_reuseport", 1),
                # The body limit of REST's predict and infer: a bigger message is refused with
                # RESOURCE_EXHAUSTED before it is decoded.
                ("grpc.max_receive_message_length", settings.max_body_bytes),
                ("grpc.max_send_message_length", -1),
            ]
        )
        add_servicer = grpc_service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server
        add_servicer(self._servicer, server)  # type: ignore[no-untyped-call]
        host = settings.host
        address = (
            f"[{host}]:{settings.grpc_port}" if ":" in host else f"{host}:{settings.grpc_port}"
        )
        try:
            port = int(server.add_insecure_port(address))
        except RuntimeError as exc:
            raise RuntimeError(f"the gRPC port {address} cannot be bound: {exc}") from None
        if port == 0:
            raise RuntimeError(f"the gRPC port {address} cannot be bound")
        await server.start()
        self._server, self.port = server, port
        log.info("grpc_listening", address=address, port=port)
        return port

    def begin_stop(self) -> None:
        """Stop taking calls now; those in flight have `drain_timeout_s` to finish."""
        if self._server is not None and self._stopping is None:
            log.info("grpc_draining", grace_s=self._settings.drain_timeout_s)
            self._stopping = asyncio.ensure_future(
                self._server.stop(self._settings.drain_timeout_s)
            )

    async def stop(self) -> None:
        """Stop (if `begin_stop` has not) and wait until the calls in flight are done."""
        self.begin_stop()
        if self._stopping is not None:
            await self._stopping
