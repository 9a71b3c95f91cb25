"""The control board: the desired state and the workers' acknowledgements, across processes."""

from __future__ import annotations

import os

import pytest

from fastinfer.repository.control import Acknowledgement, ControlBoard, StateTooLarge
from fastinfer.repository.state import DesiredState, ModelEntry, VersionSource
from tests.unit.dead_writer import die_while_writing


def _state(generation: int, path: str = "/models/iris/1") -> DesiredState:
    entry = ModelEntry(versions={"1": VersionSource(path=path)})
    return DesiredState(generation=generation, models={"iris": entry})


def test_a_published_state_is_read_by_a_forked_process() -> None:
    board = ControlBoard(2)
    assert board.read() == DesiredState()
    assert board.generation() == 0
    pid = os.fork()
    if pid == 0:
        try:
            board.publish(_state(3))
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert board.generation() == 3
    assert board.read() == _state(3)


def test_a_state_larger_than_the_board_is_refused() -> None:
    board = ControlBoard(1)
    with pytest.raises(StateTooLarge):
        board.publish(_state(1, path="x" * (1 << 20)))
    assert board.generation() == 0


def test_a_state_left_mid_write_reads_as_the_last_one_seen_until_the_next_publish() -> None:
    board = ControlBoard(1)
    board.publish(_state(1))
    die_while_writing(lambda: board.publish(_state(2)))
    assert board.generation() == 1  # announced only once complete
    assert board.read() == _state(1)
    board.publish(_state(3))
    assert board.read() == _state(3)


def test_acknowledgements_name_each_slot_and_clear_forgets_one() -> None:
    board = ControlBoard(3)
    board.acknowledge(0, 2)
    board.acknowledge(2, 1, "iris/1: " + "x" * 300)
    acks = board.acknowledgements()
    assert acks[0] == Acknowledgement(0, os.getpid(), 2, "")
    assert acks[1] == Acknowledgement(1, 0, 0, "")
    assert (acks[2].generation, len(acks[2].error)) == (1, 200)
    board.clear(2)
    assert board.acknowledgements()[2] == Acknowledgement(2, 0, 0, "")


def test_an_acknowledgement_left_mid_write_reads_as_the_last_one_seen() -> None:
    board = ControlBoard(2)
    board.acknowledge(1, 4)
    assert board.acknowledgements()[1].generation == 4
    die_while_writing(lambda: board.acknowledge(1, 5))
    assert board.acknowledgements()[1] == Acknowledgement(1, os.getpid(), 4, "")
    board.clear(1)  # what the supervisor does when it reaps the worker
    assert board.acknowledgements()[1] == Acknowledgement(1, 0, 0, "")


def test_the_change_lock_is_freed_for_a_holder_that_died_only() -> None:
    board = ControlBoard(1)
    assert board.acquire(timeout=0)
    assert not board.release_for(os.getpid() + 1)
    assert not board.acquire(timeout=0)
    assert board.release_for(os.getpid())
    assert board.acquire(timeout=0)
    board.release()
