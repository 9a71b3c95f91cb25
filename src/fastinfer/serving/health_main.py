"""The health process's own interpreter: `python -m fastinfer.serving.health_main`.

The supervisor starts it (`command`) rather than forking it: a fork would carry everything the
supervisor imported (FastAPI, pandas, the models...) and, touching those pages, copy them (about
60 MB of PSS). Started afresh it imports only the board, the verdict, asyncio and orjson, and
prometheus_client on the first `/metrics` request (see `tests/integration/test_health_port.py`).

It inherits the listening socket and the heartbeat board's memory as file descriptors, named on
its command line with the settings it needs; the metrics directory comes in the environment
(`PROMETHEUS_MULTIPROC_DIR`). Keep this module's imports to what `serve_health` needs.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
from pathlib import Path

from fastinfer.serving.health import serve_health
from fastinfer.serving.heartbeat import HeartbeatBoard
from fastinfer.serving.orphans import die_with_parent


def command(
    board: HeartbeatBoard,
    sock: socket.socket,
    loop_block_s: float,
    *,
    detailed: bool,
    parent: int,
) -> tuple[list[str], tuple[int, ...]]:
    """The command line that starts the health process, and the descriptors it must inherit."""
    fds = board.fds
    if fds is None:
        raise RuntimeError("the health process needs a board in a memfd (Linux)")
    phase_fd, slots_fd = fds
    # The same fastinfer as the supervisor's, wherever it was imported from (an embedder may
    # have put it on sys.path at run time): its root goes first on the child's path.
    root = str(Path(__file__).resolve().parents[2])
    bootstrap = (
        f"import sys; sys.path.insert(0, {root!r}); from {__name__} import main; main(sys.argv[1:])"
    )
    argv = [
        sys.executable,
        "-c",
        bootstrap,
        f"--socket-fd={sock.fileno()}",
        f"--phase-fd={phase_fd}",
        f"--slots-fd={slots_fd}",
        f"--workers={board.workers}",
        f"--loop-block-s={loop_block_s!r}",
        f"--parent={parent}",
        "--detailed" if detailed else "--public",
    ]
    return argv, (sock.fileno(), phase_fd, slots_fd)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fastinfer.serving.health_main",
        description="The health process, as the supervisor starts it (not run by hand).",
    )
    parser.add_argument("--socket-fd", type=int, required=True, help="bound, listening socket")
    parser.add_argument("--phase-fd", type=int, required=True, help="the board's phase word")
    parser.add_argument("--slots-fd", type=int, required=True, help="the board's slots")
    parser.add_argument("--workers", type=int, required=True, help="slots on the board")
    parser.add_argument("--loop-block-s", type=float, required=True)
    parser.add_argument("--parent", type=int, required=True, help="the supervisor's pid")
    detail = parser.add_mutually_exclusive_group(required=True)
    detail.add_argument("--detailed", dest="detailed", action="store_true", help="pids shown")
    detail.add_argument("--public", dest="detailed", action="store_false", help="pids hidden")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when to stop
    die_with_parent(args.parent)  # a supervisor killed -9 takes the health port with it
    board = HeartbeatBoard(args.workers, fds=(args.phase_fd, args.slots_fd))
    sock = socket.socket(fileno=args.socket_fd)
    serve_health(board, sock, args.loop_block_s, detailed=args.detailed)


if __name__ == "__main__":
    main()
