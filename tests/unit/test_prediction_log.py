"""The prediction log's buffer and batches, the JSONL sink's rotation, feedback scoring and the
shared feedback index."""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
from pathlib import Path
from typing import Any

import pytest

from fastinfer.errors import PredictionLogUnavailable
from fastinfer.monitoring.feedback import FeedbackIndex, OutcomeError, OutputLabels, score
from fastinfer.monitoring.prediction_log import REDACTED, PredictionLog
from fastinfer.monitoring.sinks import JsonlSink, Record

ROW = {"name": "Ada", "age": 36.0}
LABEL = {"label": "yes", "probabilities": {"no": 0.2, "yes": 0.8}}


def read_records(directory: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in sorted(directory.glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]


def test_each_row_becomes_a_record_with_redacted_fields(tmp_path: Path) -> None:
    async def scenario() -> None:
        log = PredictionLog(JsonlSink(tmp_path, max_bytes=1 << 20, backups=2), redact=["name"])
        log.offer("m", "1", "req-1", [ROW, {"name": None, "age": 1.0}], [LABEL, LABEL], 2.5)
        await log.close()

    asyncio.run(scenario())
    records = read_records(tmp_path)
    assert [(r["request_id"], r["row"]) for r in records] == [("req-1", 0), ("req-1", 1)]
    first = records[0]
    assert first["type"] == "prediction"
    assert (first["model"], first["version"], first["latency_ms"]) == ("m", "1", 2.5)
    assert first["input"] == {"name": REDACTED, "age": 36.0}
    assert records[1]["input"] == {"name": None, "age": 1.0}  # nothing to hide in a null
    assert first["output"] == LABEL
    assert first["time"].endswith("+00:00")
    assert ROW["name"] == "Ada"  # the request's own row is not changed


def test_sampling_logs_about_the_configured_share_of_requests(tmp_path: Path) -> None:
    random.seed(7)

    async def scenario() -> int:
        log = PredictionLog(
            JsonlSink(tmp_path, max_bytes=1 << 20, backups=2), sample_rate=0.25, capacity=10_000
        )
        for i in range(2000):
            log.offer("m", "1", f"r{i}", [ROW], [LABEL], None)
        await log.close()
        return log.written

    written = asyncio.run(scenario())
    assert 400 < written < 600
    assert len(read_records(tmp_path)) == written


def test_a_full_buffer_drops_and_counts_instead_of_waiting(tmp_path: Path) -> None:
    counted: dict[str, int] = {}

    def count(outcome: str, rows: int) -> None:
        counted[outcome] = counted.get(outcome, 0) + rows

    async def scenario() -> PredictionLog:
        log = PredictionLog(
            JsonlSink(tmp_path, max_bytes=1 << 20, backups=2), capacity=10, count=count
        )
        for i in range(15):  # no task is writing: the buffer fills at 10 rows
            log.offer("m", "1", f"r{i}", [ROW], [LABEL], None)
        log.offer("m", "1", "big", [ROW] * 3, [LABEL] * 3, None)
        await log.close()
        return log

    log = asyncio.run(scenario())
    assert (log.written, log.dropped) == (10, 8)
    assert counted == {"written": 10, "dropped_buffer_full": 8}
    assert [r["request_id"] for r in read_records(tmp_path)] == [f"r{i}" for i in range(10)]


class FlakySink:
    """Refuses the first `failures` writes, like a database that is restarting."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.batches: list[list[Record]] = []

    def write(self, records: list[Record]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("database restarting")
        self.batches.append(records)

    def close(self) -> None:
        pass


def test_a_refused_batch_is_written_again_without_loss_or_duplicates() -> None:
    indexed: list[int] = []
    sink = FlakySink(failures=2)

    async def scenario() -> PredictionLog:
        log = PredictionLog(
            sink, batch_rows=4, flush_s=0.01, on_batch=lambda records: indexed.append(len(records))
        )
        log.start()
        for i in range(10):
            log.offer("m", "1", f"r{i}", [ROW], [LABEL], None)
        for _ in range(500):
            if log.written == 10:
                break
            await asyncio.sleep(0.01)
        await log.close()
        return log

    log = asyncio.run(scenario())
    written = [r["request_id"] for batch in sink.batches for r in batch]
    assert written == [f"r{i}" for i in range(10)]
    assert (log.written, log.dropped) == (10, 0)
    assert sum(indexed) == 10  # each batch was indexed once, however often it was retried


def test_a_refused_batch_is_retried_after_a_pause_not_at_the_next_flush() -> None:
    """ "Written again every second" holds whatever flush_s is (here an hour)."""
    sink = FlakySink(failures=1)

    async def scenario() -> float:
        log = PredictionLog(sink, batch_rows=1, flush_s=3600)
        log.start()
        log.offer("m", "1", "r0", [ROW], [LABEL], None)  # a full batch: written at once, refused
        started = asyncio.get_running_loop().time()
        while log.written == 0:
            assert asyncio.get_running_loop().time() - started < 10, "never retried"
            await asyncio.sleep(0.01)
        await log.close()
        return asyncio.get_running_loop().time() - started

    assert asyncio.run(scenario()) < 5
    assert [r["request_id"] for batch in sink.batches for r in batch] == ["r0"]


def test_what_is_left_at_shutdown_when_the_sink_is_down_is_counted_as_lost() -> None:
    async def scenario() -> PredictionLog:
        log = PredictionLog(FlakySink(failures=1000))
        log.offer("m", "1", "r", [ROW, ROW], [LABEL, LABEL], None)
        await log.close(timeout=1)
        return log

    log = asyncio.run(scenario())
    assert (log.written, log.dropped) == (0, 2)


class GatedSink:
    """Records batches; while `gate` is clear a write blocks (a slow disk)."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def write(self, records: list[Record]) -> None:
        self.entered.set()
        assert self.gate.wait(10), "the test never opened the gate"
        self.batches.append([r["request_id"] for r in records])

    def close(self) -> None:
        pass


def test_durable_a_request_waits_for_its_batch_and_those_behind_it_share_the_next() -> None:
    """Durable mode: the future of an offer is done only once its batch is written; requests
    arriving during a write go together in the next one (group commit), without waiting for
    flush_s."""
    sink = GatedSink()

    async def scenario() -> None:
        log = PredictionLog(sink, flush_s=3600, durable=True)
        log.start()
        sink.gate.clear()
        first = log.offer("m", "1", "a", [ROW], [LABEL], None)
        assert first is not None
        await asyncio.to_thread(sink.entered.wait, 10)
        behind = [log.offer("m", "1", rid, [ROW], [LABEL], None) for rid in ("b", "c")]
        await asyncio.sleep(0.05)
        assert not first.done() and not any(f.done() for f in behind if f)
        sink.gate.set()
        await asyncio.wait_for(asyncio.gather(first, *[f for f in behind if f]), 10)
        assert sink.batches == [["a"], ["b", "c"]]
        await log.close()

    asyncio.run(scenario())


def test_durable_a_failing_sink_refuses_the_waiting_requests_and_loses_no_rows() -> None:
    """A write that fails answers its waiting requests with 503 at once (and those offered while
    the sink is failing); their rows stay in the buffer and go in once it recovers."""
    sink = FlakySink(failures=1)

    async def scenario() -> None:
        log = PredictionLog(sink, flush_s=0.05, durable=True)
        refused = log.offer("m", "1", "r0", [ROW], [LABEL], None)
        assert refused is not None
        log.start()
        with pytest.raises(PredictionLogUnavailable) as caught:
            await asyncio.wait_for(refused, 10)
        assert (caught.value.status, caught.value.code) == (503, "prediction_log_unavailable")
        assert caught.value.headers == {"Retry-After": "1"}
        for _ in range(500):  # the retry writes r0
            if log.written == 1:
                break
            await asyncio.sleep(0.01)
        accepted = log.offer("m", "1", "r1", [ROW], [LABEL], None)
        assert accepted is not None
        await asyncio.wait_for(accepted, 10)
        await log.close()

    asyncio.run(scenario())
    assert [r["request_id"] for batch in sink.batches for r in batch] == ["r0", "r1"]


def test_durable_a_full_buffer_refuses_instead_of_dropping_silently() -> None:
    async def scenario() -> None:
        log = PredictionLog(GatedSink(), capacity=1, durable=True)
        kept = log.offer("m", "1", "r0", [ROW], [LABEL], None)
        dropped = log.offer("m", "1", "r1", [ROW], [LABEL], None)
        assert kept is not None and dropped is not None and not kept.done()
        with pytest.raises(PredictionLogUnavailable, match="buffer is full"):
            await dropped
        await log.close()
        assert kept.done() and kept.exception() is None

    asyncio.run(scenario())


def test_buffered_mode_hands_back_nothing_to_wait_for(tmp_path: Path) -> None:
    async def scenario() -> None:
        log = PredictionLog(JsonlSink(tmp_path, max_bytes=1 << 20, backups=2))
        assert log.offer("m", "1", "r", [ROW], [LABEL], None) is None
        await log.close()

    asyncio.run(scenario())


def test_the_durable_jsonl_sink_fsyncs_each_batch_and_a_new_file_s_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(descriptor: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)
    sink = JsonlSink(tmp_path, max_bytes=1 << 20, backups=2, fsync=True)
    sink.write([{"type": "prediction", "request_id": "a"}])
    sink.write([{"type": "prediction", "request_id": "b"}])
    sink.close()
    assert synced == [str(tmp_path), str(sink.path), str(sink.path)]
    buffered = JsonlSink(tmp_path / "b", max_bytes=1 << 20, backups=2)
    buffered.write([{"type": "prediction", "request_id": "c"}])
    buffered.close()
    assert len(synced) == 3  # buffered: flushed to the kernel, never fsync'ed


def test_jsonl_files_rotate_and_old_ones_are_deleted(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path, max_bytes=2048, backups=2)
    record = {"type": "prediction", "request_id": "r", "input": {"text": "x" * 200}}
    for _ in range(40):  # ~9 KB: four rotations
        sink.write([record])
    sink.close()
    files = sorted(tmp_path.glob("*.jsonl"))
    assert len(files) == 3  # the current file and two rotated ones
    assert all(f.stat().st_size <= 2048 for f in files)
    assert sink.path in files


def test_classifier_outcomes_may_be_labels_or_classes() -> None:
    labels = OutputLabels({"0": "died", "1": "survived"}, ["died", "survived"])
    survived = {"label": "survived", "probabilities": {}}
    assert score(survived, "survived", labels).correct is True
    assert score(survived, 1, labels).correct is True
    assert score(survived, "1", labels).correct is True
    assert score(survived, 0, labels).correct is False
    assert score({"label": "3"}, 3.0).correct is True  # category keys: 3.0 is "3"


def test_an_outcome_the_model_cannot_answer_is_refused() -> None:
    """Counted as wrong it would skew the live accuracy (issue 13: "setosa" for labels 0/1/2)."""
    labels = OutputLabels(None, ["0", "1", "2"])
    with pytest.raises(OutcomeError, match=r"'setosa' is not a label .* allowed: '0', '1', '2'"):
        score({"label": "1"}, "setosa", labels)
    assert score({"label": "1"}, 2, labels).correct is False  # a real label, just not this one
    mapped = OutputLabels({"0": "died", "1": "survived"}, ["died", "survived"])
    with pytest.raises(OutcomeError, match=r"or their classes '0', '1'"):
        score({"label": "died"}, 7, mapped)


def test_regressor_outcomes_give_the_absolute_error() -> None:
    assert score({"value": 2.5}, 4).abs_error == 1.5
    with pytest.raises(OutcomeError):
        score({"value": 2.5}, "four")
    with pytest.raises(OutcomeError):
        score({"value": 2.5}, True)


def test_the_feedback_index_is_shared_between_processes(tmp_path: Path) -> None:
    path = tmp_path / "feedback.sqlite"
    writer = FeedbackIndex(path, window_s=3600)  # as if in two server processes
    reader = FeedbackIndex(path, window_s=3600)
    writer.add_predictions(
        [
            {"type": "prediction", "model": "m", "version": "2", "request_id": "a", "row": 0,
             "output": LABEL},
            {"type": "prediction", "model": "m", "version": "2", "request_id": "a", "row": 1,
             "output": {"label": "no"}},
            {"type": "feedback", "model": "m", "version": "2", "request_id": "a", "row": 0},
        ]
    )  # fmt: skip
    found = reader.lookup("m", "a", 1)
    assert found is not None
    assert (found.version, found.output) == ("2", {"label": "no"})
    assert reader.lookup("m", "a", 2) is None
    assert reader.lookup("other", "a", 0) is None
    reader.add_feedback("m", "2", "a", 0, score(LABEL, "yes"))
    reader.add_feedback("m", "2", "a", 1, score({"label": "no"}, "yes"))
    reader.add_feedback("m", "2", "a", 1, score({"label": "no"}, "no"))  # a corrected retry
    accuracy = writer.accuracy()[("m", "2")]
    assert (accuracy.feedback, accuracy.accuracy, accuracy.mean_absolute_error) == (2, 1.0, None)
    writer.close()
    reader.close()
