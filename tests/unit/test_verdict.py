"""The health process's verdicts and answers, from a heartbeat board alone (no HTTP)."""

from __future__ import annotations

import time

from fastinfer.serving.health import answer
from fastinfer.serving.heartbeat import (
    DRAINING,
    PHASE_LOADING,
    PHASE_SERVING,
    PHASE_STOPPING,
    READY,
    STALLED,
    HeartbeatBoard,
)
from fastinfer.serving.verdict import judge
from tests.unit.dead_writer import die_while_writing


def _serving(workers: int) -> HeartbeatBoard:
    board = HeartbeatBoard(workers)
    board.set_phase(PHASE_SERVING)
    return board


def test_every_worker_beating_ready_is_alive_and_ready() -> None:
    board = _serving(2)
    board.write(0, 100, READY)
    board.write(1, 101, READY)
    verdict = judge(board, loop_block_s=5)
    assert verdict.alive and verdict.ready
    assert verdict.workers["worker-0"]["pid"] == 100
    assert set(verdict.workers) == {"worker-0", "worker-1"}
    assert answer("/livez", verdict) == (200, {"status": "alive"})
    assert answer("/readyz", verdict) == (200, {"status": "ready"})


def test_a_silent_worker_is_wedged_and_a_stalled_one_too() -> None:
    board = _serving(3)
    board.write(0, 100, READY)
    board.write(1, 101, READY | STALLED, "iris: 31.5")
    board.write(2, 102, READY | STALLED)
    verdict = judge(board, loop_block_s=5, now=time.monotonic() + 6)
    assert verdict.wedged["worker-0"].startswith("no heartbeat for 6.")
    assert verdict.wedged["worker-0"].endswith("(event loop blocked)")
    verdict = judge(board, loop_block_s=5)
    assert verdict.wedged == {"worker-1": "iris: 31.5", "worker-2": "inference stalled"}
    assert verdict.ready  # wedged is liveness' business
    status, body = answer("/livez", verdict)
    assert status == 503
    assert body["code"] == "stalled"
    assert body["message"] == (
        "a server process is wedged: worker-1: iris: 31.5; worker-2: inference stalled"
    )
    assert body["details"] == {"wedged": verdict.wedged}
    assert len(body["request_id"]) == 32


def test_not_ready_draining_starting_and_unreadable_workers_keep_readiness_off() -> None:
    board = _serving(5)
    board.write(0, 100, 0, "iris: loading")
    board.write(1, 101, 0)
    board.write(2, 102, READY | DRAINING)
    board.write(3, 0, 0, "starting")  # the supervisor's write before it forks the worker
    board.write(4, 104, READY)
    die_while_writing(lambda: board.write(4, 104, READY))
    verdict = judge(board, loop_block_s=5)
    assert verdict.alive
    assert verdict.not_ready == {
        "worker-0": "iris: loading",
        "worker-1": "not ready",
        "worker-2": "draining",
        "worker-3": "starting",
        "worker-4": "heartbeat unreadable",
    }
    assert set(verdict.workers) == {"worker-0", "worker-1", "worker-2"}
    status, body = answer("/readyz", verdict)
    assert (status, body["code"]) == (503, "not_ready")
    assert body["details"] == {"models": verdict.not_ready}


def test_the_supervisor_phase_comes_first_and_stopping_is_no_wedge() -> None:
    board = HeartbeatBoard(1)
    board.write(0, 100, READY)
    assert board.phase() == PHASE_LOADING
    verdict = judge(board, loop_block_s=5)
    assert list(verdict.not_ready.items()) == [("supervisor", "loading")]
    board.set_phase(PHASE_STOPPING)
    verdict = judge(board, loop_block_s=5, now=time.monotonic() + 60)
    assert verdict.alive
    assert verdict.not_ready == {"supervisor": "stopping"}


def test_health_has_both_verdicts_and_other_paths_are_not_found() -> None:
    board = _serving(1)
    board.write(0, 100, READY)
    verdict = judge(board, loop_block_s=5)
    status, body = answer("/health", verdict)
    assert status == 200
    assert body["alive"]["ok"] is True
    assert body["alive"]["wedged"] == {}
    assert body["alive"]["workers"]["worker-0"]["pid"] == 100
    assert body["ready"] == {"ok": True, "not_ready": {}}
    assert answer("/nope", verdict) == (404, {"code": "not_found", "message": "no route for /nope"})


def test_probes_and_the_public_health_show_no_pids_paths_or_exception_names() -> None:
    board = _serving(2)
    board.write(0, 100, READY)
    board.write(1, 101, 0, "titanic/1: ValueError: /srv/models/titanic/1/model.joblib: sha256")
    verdict = judge(board, loop_block_s=5)
    status, body = answer("/readyz", verdict)
    assert status == 503
    text = str(body)
    assert "/srv/models" not in text and "ValueError" not in text and "model.joblib" in text
    _, public = answer("/health", verdict, detailed=False)
    assert "pid" not in public["alive"]["workers"]["worker-0"]
    assert "/srv/models" not in str(public)
    _, detailed = answer("/health", verdict)  # no API keys configured: the serving port's too
    assert detailed["alive"]["workers"]["worker-1"]["pid"] == 101
