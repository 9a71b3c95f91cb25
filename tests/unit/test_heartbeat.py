"""The heartbeat board and the beat a server process writes, without HTTP."""

from __future__ import annotations

import asyncio
import os
import time
from types import SimpleNamespace
from typing import Any

from fastinfer.serving.heartbeat import (
    DRAINING,
    HEARTBEAT_S,
    HEARTBEAT_STEADY_S,
    PHASE_LOADING,
    PHASE_SERVING,
    READY,
    STALLED,
    Heartbeat,
    HeartbeatBoard,
    WorkerBeat,
)
from tests.unit.dead_writer import die_while_writing


def test_a_fresh_board_is_loading_and_no_worker_has_written() -> None:
    board = HeartbeatBoard(2)
    assert board.phase() == PHASE_LOADING
    assert board.read(0) == WorkerBeat(0, 0, 0.0, 0, "")
    assert board.read(1) == WorkerBeat(1, 0, 0.0, 0, "")


def test_a_slot_reads_back_its_pid_flags_reason_and_a_fresh_tick() -> None:
    board = HeartbeatBoard(2)
    before = time.monotonic()
    board.write(1, 1234, READY | DRAINING, "iris: loading")
    beat = board.read(1)
    assert beat is not None
    assert (beat.index, beat.pid, beat.reason) == (1, 1234, "iris: loading")
    assert beat.flags == READY | DRAINING
    assert before <= beat.tick <= time.monotonic()
    assert board.read(0) == WorkerBeat(0, 0, 0.0, 0, "")  # the neighbour is untouched


def test_a_long_reason_is_cut_to_the_slot_without_failing_on_a_split_character() -> None:
    board = HeartbeatBoard(1)
    board.write(0, 1, STALLED, "é" * 100)  # 200 bytes of UTF-8
    beat = board.read(0)
    assert beat is not None
    assert beat.reason == "é" * 48  # 96 bytes


def test_the_phase_and_the_slots_are_shared_with_forked_processes() -> None:
    board = HeartbeatBoard(2)
    pid = os.fork()
    if pid == 0:
        try:
            board.write(0, os.getpid(), READY)
            board.set_phase(PHASE_SERVING)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    beat = board.read(0)
    assert beat is not None
    assert (beat.pid, beat.flags) == (pid, READY)
    assert board.phase() == PHASE_SERVING


def test_a_slot_left_mid_write_reads_as_none() -> None:
    board = HeartbeatBoard(2)
    board.write(0, 11, READY)
    die_while_writing(lambda: board.write(0, 11, READY))
    assert board.read(0) is None
    assert board.read(1) is not None
    board.write(0, 12, 0, "starting")  # the replacement's first write repairs the slot
    beat = board.read(0)
    assert beat is not None
    assert (beat.pid, beat.reason) == (12, "starting")


class _Engine:
    def __init__(
        self,
        draining: bool = False,
        stalled: dict[str, float] | None = None,
        not_ready: dict[str, str] | None = None,
    ) -> None:
        self.draining = draining
        self._stalled = stalled or {}
        self._not_ready = not_ready or {}

    def stalled(self) -> dict[str, float]:
        return dict(self._stalled)

    def not_ready(self) -> dict[str, str]:
        return dict(self._not_ready)


class _Registry:
    def __init__(self, not_ready: dict[str, str] | None = None) -> None:
        self._not_ready = not_ready or {}

    def not_ready(self) -> dict[str, str]:
        return dict(self._not_ready)

    def __iter__(self) -> Any:
        return iter(())


def _beat(engine: _Engine, registry: _Registry | None = None) -> WorkerBeat:
    board = HeartbeatBoard(2)
    state = SimpleNamespace(
        engine=engine, registry=registry or _Registry(), manager=SimpleNamespace(started=True)
    )
    Heartbeat(board, 1, state).beat()
    beat = board.read(1)
    assert beat is not None
    assert beat.pid == os.getpid()
    return beat


def test_a_ready_process_beats_ready_with_no_reason() -> None:
    beat = _beat(_Engine())
    assert (beat.flags, beat.reason) == (READY, "")


def test_a_draining_process_is_still_ready_and_says_draining() -> None:
    beat = _beat(_Engine(draining=True))
    assert (beat.flags, beat.reason) == (READY | DRAINING, "")


def test_a_process_with_a_loading_model_is_not_ready_and_says_why() -> None:
    beat = _beat(_Engine(not_ready={"_server": "worker died"}), _Registry({"iris": "loading"}))
    assert beat.flags == 0
    assert beat.reason == "iris: loading; _server: worker died"


def test_stalled_inference_is_flagged_and_is_the_reason() -> None:
    beat = _beat(_Engine(stalled={"iris": 31.5}), _Registry({"car": "loading"}))
    assert beat.flags == STALLED
    assert beat.reason == "iris: 31.5"


def _counting(engine: _Engine, **options: Any) -> tuple[Heartbeat, list[tuple[int, str]]]:
    """A heartbeat whose beats are recorded (as written) in the list it returns."""
    state = SimpleNamespace(
        engine=engine, registry=_Registry(), manager=SimpleNamespace(started=True)
    )
    heartbeat = Heartbeat(HeartbeatBoard(1), 0, state, **options)
    beats: list[tuple[int, str]] = []
    write = heartbeat.beat

    def recorded() -> tuple[int, str]:
        beats.append(write())
        return beats[-1]

    heartbeat.beat = recorded  # type: ignore[method-assign]
    return heartbeat, beats


def test_a_nudge_writes_a_beat_at_once() -> None:
    heartbeat, beats = _counting(_Engine())

    async def run() -> None:
        task = asyncio.create_task(heartbeat.run())
        await asyncio.sleep(0)  # the first beat
        assert len(beats) == 1
        heartbeat.nudge()
        for _ in range(5):
            await asyncio.sleep(0)
        assert len(beats) == 2  # long before any interval ran out
        task.cancel()

    asyncio.run(run())


def test_a_steady_state_beats_less_often_but_well_inside_loop_block_s() -> None:
    assert Heartbeat(HeartbeatBoard(1), 0, SimpleNamespace())._steady_s == HEARTBEAT_STEADY_S
    quick = Heartbeat(HeartbeatBoard(1), 0, SimpleNamespace(), loop_block_s=0.4)
    assert quick._steady_s <= 0.4 / 4 + 1e-9 or quick._steady_s == HEARTBEAT_S
    assert HEARTBEAT_STEADY_S < 10.0 / 4  # the default loop_block_s
