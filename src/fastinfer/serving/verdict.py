"""Whether the server processes are alive and ready, judged from the heartbeat board alone.

The health process answers every probe with this, without asking any server process: a worker
whose event loop is blocked cannot answer, but its silence on the board says so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from fastinfer.errors import public_reason
from fastinfer.serving.heartbeat import (
    DRAINING,
    PHASE_NAMES,
    PHASE_SERVING,
    PHASE_STOPPING,
    READY,
    STALLED,
    HeartbeatBoard,
    WorkerBeat,
)


@dataclass(frozen=True)
class Verdict:
    wedged: dict[str, str]  # worker → why it counts as wedged (fails liveness)
    not_ready: dict[str, str]  # worker (or "supervisor") → why it takes no traffic
    workers: dict[str, dict[str, Any]]  # worker → pid, heartbeat age

    @property
    def alive(self) -> bool:
        return not self.wedged

    @property
    def ready(self) -> bool:
        return not self.not_ready

    def as_json(self) -> dict[str, Any]:
        """The `/health` body, with each worker's pid."""
        return {
            "alive": {"ok": self.alive, "wedged": self.wedged, "workers": self.workers},
            "ready": {"ok": self.ready, "not_ready": self.not_ready},
        }

    def public(self) -> Verdict:
        """The verdict for a client that proved nothing: no pids, no directories or exception
        names in the reasons (`errors.public_reason`)."""
        return Verdict(
            {name: public_reason(why) for name, why in self.wedged.items()},
            {name: public_reason(why) for name, why in self.not_ready.items()},
            {
                name: {k: v for k, v in worker.items() if k != "pid"}
                for name, worker in self.workers.items()
            },
        )


def judge(board: HeartbeatBoard, loop_block_s: float, now: float | None = None) -> Verdict:
    """Liveness and readiness of every server process; `now` is a `time.monotonic()` reading."""
    now = time.monotonic() if now is None else now
    phase = board.phase()
    wedged: dict[str, str] = {}
    not_ready: dict[str, str] = {}
    workers: dict[str, dict[str, Any]] = {}
    for index in range(board.workers):
        name = f"worker-{index}"
        beat = board.read(index)
        if beat is None:  # left mid-write: not ready, but not proof of a wedge either
            not_ready[name] = "heartbeat unreadable"
            continue
        if beat.pid == 0:
            not_ready[name] = "starting"
            continue
        workers[name] = {"pid": beat.pid, "heartbeat_age_s": round(now - beat.tick, 3)}
        why_wedged, why_not_ready = _judge_worker(beat, now, loop_block_s)
        if why_wedged:
            wedged[name] = why_wedged
        if why_not_ready:
            not_ready[name] = why_not_ready
    if phase != PHASE_SERVING:
        not_ready = {"supervisor": PHASE_NAMES.get(phase, "unknown"), **not_ready}
    if phase == PHASE_STOPPING:
        wedged = {}  # workers stop beating as they exit: that is not a wedge
    return Verdict(wedged, not_ready, workers)


def _judge_worker(beat: WorkerBeat, now: float, loop_block_s: float) -> tuple[str, str]:
    """(why it is wedged, why it is not ready) for one worker; "" where it is fine."""
    age = now - beat.tick
    wedged = ""
    if age > loop_block_s:
        wedged = f"no heartbeat for {age:.1f}s (event loop blocked)"
    elif beat.flags & STALLED:
        wedged = beat.reason or "inference stalled"
    not_ready = ""
    if not beat.flags & READY:
        not_ready = beat.reason or "not ready"
    elif beat.flags & DRAINING:
        not_ready = "draining"
    return wedged, not_ready
