"""Sources in batches: the frames `frames` gives, paced alike, only grouped."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from pathlib import Path

import can
import numpy as np
import pytest

from oodida.hw.frames import COLUMNS_FROM, FrameBatch, FrameRows, batch_of_messages
from oodida.hw.sources import BusSource, LogReplay

FIRST = 1533201287.0


def _rows(batches: list[FrameBatch]) -> list[tuple[float, int, bytes]]:
    return [row for batch in batches for row in batch.rows()]


def _keys(messages: list[can.Message]) -> list[tuple[float, int, bytes]]:
    return [(m.timestamp, m.arbitration_id, bytes(m.data)) for m in messages]


@pytest.mark.parametrize(("channel", "offset", "size"), [(None, 0.0, 4096), ("can0", 30.0, 1000), ("can1", 0.0, 1)])
def test_replay_batches_hold_every_frame_of_frames(log_path: Path, channel: str | None, offset: float,
                                                   size: int) -> None:
    replay = LogReplay(log_path, speed=0, channel=channel, offset=offset)
    expected = _keys(list(replay.frames(threading.Event())))
    batches = list(LogReplay(log_path, speed=0, channel=channel, offset=offset).batches(threading.Event(), size))
    assert _rows(batches) == expected
    assert all(len(b) == size for b in batches[:-1]) and 0 < len(batches[-1]) <= size


def test_looping_batches_shift_timestamps_as_frames_does(log_path: Path) -> None:
    expected = _keys(list(itertools.islice(LogReplay(log_path, speed=0, loop=True, channel="can0",
                                                     offset=50).frames(threading.Event()), 30_000)))
    replay = LogReplay(log_path, speed=0, loop=True, channel="can0", offset=50)
    got = _rows(list(itertools.islice(replay.batches(threading.Event(), 777), 40)))[:30_000]
    assert got == expected  # bit-equal timestamps across the seam, too
    assert not replay.ended


def test_paced_batches_are_never_early_and_group_what_is_due(log_path: Path) -> None:
    speed = 20.0
    replay = LogReplay(log_path, speed=speed, offset=10.0, channel="can0")
    origin = FIRST + 10.0
    early = 0.0
    sizes = []
    started = time.monotonic()
    for batch in replay.batches(threading.Event()):
        elapsed = time.monotonic() - started
        early = max(early, float(((batch.timestamps - origin) / speed).max()) - elapsed)
        sizes.append(len(batch))
        if batch.timestamps[-1] >= origin + 4.0:
            break
    wall = time.monotonic() - started
    assert 0.18 <= wall <= 1.0
    assert early < 0.002  # the 0.5 ms skip, plus clock noise
    assert max(sizes) > 1 and max(sizes) <= 512


def test_stop_ends_paced_batches_promptly(tiny_log: Path) -> None:
    replay = LogReplay(tiny_log, speed=0.01, channel="can0")
    stop = threading.Event()
    first = threading.Event()

    def read() -> None:
        for _ in replay.batches(stop):
            first.set()

    reader = threading.Thread(target=read)
    reader.start()
    assert first.wait(timeout=5)
    stopped_at = time.monotonic()
    stop.set()
    reader.join(timeout=2)
    assert not reader.is_alive() and time.monotonic() - stopped_at < 0.1


def test_bus_batches_take_what_is_queued(log_messages: list[can.Message]) -> None:
    channel = f"oodida-test-{uuid.uuid4().hex}"
    sent = [m for m in log_messages if m.channel == "can0"][:3000]
    sender = can.Bus(interface="virtual", channel=channel, ignore_config=True)
    try:
        with BusSource("virtual", channel) as source:
            for message in sent:
                sender.send(message)
            batches = []
            for batch in source.batches(threading.Event(), 1000):
                batches.append(batch)
                if sum(map(len, batches)) >= len(sent):
                    break
    finally:
        sender.shutdown()
    assert [(i, d) for _, i, d in _rows(batches)] == [(m.arbitration_id, bytes(m.data)) for m in sent]
    assert [len(b) for b in batches] == [1000, 1000, 1000]  # all queued before the first recv


def test_frame_batch_checks_its_columns() -> None:
    with pytest.raises(ValueError):
        FrameBatch(np.zeros(2), np.zeros(3, dtype=np.int64), np.zeros((2, 8), np.uint8), np.zeros(2, np.int64))
    with pytest.raises(ValueError):
        FrameBatch(np.zeros(2), np.zeros(2, dtype=np.int64), np.zeros((2, 4), np.uint8), np.zeros(2, np.int64))
    batch = FrameBatch.from_frames([(1.0, 5, b"\x01\x02"), (2.0, 6, bytes(range(12)))])
    assert batch.data.shape == (2, 12)
    assert list(batch.rows()) == [(1.0, 5, b"\x01\x02"), (2.0, 6, bytes(range(12)))]


def test_a_few_frames_stay_rows_and_many_become_columns(log_messages: list[can.Message]) -> None:
    """Below COLUMNS_FROM frames a bus batch is handed over as rows (the per-frame
    decoder reads them as they are); from it on, as numpy columns. Same frames either way."""
    sent = [m for m in log_messages if m.channel == "can0"][: COLUMNS_FROM + 1]
    few, many = batch_of_messages(sent[:COLUMNS_FROM - 1]), batch_of_messages(sent)
    assert isinstance(few, FrameRows) and isinstance(many, FrameBatch)
    expected = [(m.timestamp, m.arbitration_id, bytes(m.data)) for m in sent]
    assert list(few.rows()) == expected[:COLUMNS_FROM - 1] and list(many.rows()) == expected
    assert len(few) == COLUMNS_FROM - 1 and len(many) == COLUMNS_FROM + 1
