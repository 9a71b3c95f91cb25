"""Checking the ports before the models load: a taken port is one line, not a late traceback."""

from __future__ import annotations

import contextlib
import errno
import socket

from fastinfer.config import Settings


class PortUnavailableError(RuntimeError):
    """A port `serve` needs cannot be bound; the message names it and the setting to change."""


def check_ports(settings: Settings) -> None:
    """Bind (and release) the serving port and the health process's port, as they will be
    bound, so a taken one fails in a second instead of after the models load (minutes)."""
    wanted = [("serving", settings.port, "--port / FASTINFER_PORT")]
    if settings.probe_port is not None:
        wanted.append(("health", settings.probe_port, "--health-port, or --no-health-process"))
    if len(wanted) == 2 and wanted[0][1] == wanted[1][1] != 0:
        raise PortUnavailableError(
            f"the serving port and the health port are both {settings.port}: set another "
            "--health-port, or --no-health-process"
        )
    if settings.grpc_port is not None:
        wanted.append(("gRPC", settings.grpc_port, "--grpc-port / FASTINFER_GRPC_PORT"))
    taken = [port for _, port, _ in wanted if port != 0]
    if len(taken) != len(set(taken)):
        raise PortUnavailableError(
            f"two of the serving, health and gRPC ports are the same ({', '.join(map(str, taken))})"
            ": give each its own"
        )
    for role, port, setting in wanted:
        if port != 0:  # ephemeral: the kernel picks a free one
            _try_bind(settings.host, port, role, setting)


def _try_bind(host: str, port: int, role: str, setting: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with contextlib.closing(socket.socket(family, socket.SOCK_STREAM)) as sock:
        # As the server binds (SO_REUSEADDR: a port in TIME_WAIT is free), but without
        # SO_REUSEPORT, so that another server's SO_REUSEPORT workers count as taking it.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                problem = "is already in use"
            elif exc.errno == errno.EACCES:
                problem = "needs privileges this process does not have"
            elif exc.errno == errno.EADDRNOTAVAIL:
                problem = f"cannot be bound: {host} is not an address of this machine"
            else:
                problem = f"cannot be bound: {exc.strerror or exc}"
            raise PortUnavailableError(
                f"the {role} port {port} on {host} {problem} (change it with {setting})"
            ) from None
