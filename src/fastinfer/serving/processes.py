"""Process plumbing for the supervisor's children: the sockets they inherit, a fork that holds
the stop signals until the child has its own handlers, and the child's own process group."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Callable
from types import FrameType


def bind_socket(
    host: str, port: int, *, reuse_port: bool = False, listen: bool = True
) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    if listen:
        sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def reuse_port_available() -> bool:
    return hasattr(socket, "SO_REUSEPORT")


STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def fork_holding_stop_signals() -> int:
    """os.fork with SIGTERM and SIGINT held until the child has its own handlers (see
    `child_signals`). Otherwise one that arrives as the child starts runs the supervisor's
    handler in the child, or is lost: pending for a Python handler the child then replaced
    (a supervisor stopping just after forking its health process waited for it for ever)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    pid = os.fork()
    if pid != 0:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    return pid


def child_signals(
    *,
    interrupt: signal.Handlers | Callable[[int, FrameType | None], None],
    terminate: signal.Handlers | Callable[[int, FrameType | None], None] = signal.SIG_DFL,
) -> None:
    """In a child of `fork_holding_stop_signals`: its own dispositions, then the held signals
    are delivered."""
    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def exit_before_serving(_sig: int, _frame: FrameType | None) -> None:
    os._exit(0)


def leave_terminal_group() -> None:
    """In a child just forked: a process group of its own, so a Ctrl-C (SIGINT to the terminal's
    whole group) reaches only the supervisor, which forwards it once. Received twice, from the
    terminal and then the supervisor, a worker took the second for "force exit": it skipped the
    application's shutdown and uvicorn logged a CancelledError traceback. A supervisor killed
    -9 still takes its children with it (`die_with_parent`)."""
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
