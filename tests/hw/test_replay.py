"""LogReplay: order, offset, channel, looping, pacing and stopping, on the real log."""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from pathlib import Path

import can
import pytest

from oodida.hw.errors import SourceError
from oodida.hw.sources import LogReplay

# The log's first timestamp and its span, as `candump -L` wrote them.
FIRST = 1533201287.0
DURATION = 59.99269890785217


def _key(message: can.Message) -> tuple[float, int, bytes, str]:
    return (message.timestamp, message.arbitration_id, bytes(message.data), message.channel)


def _take(replay: LogReplay, count: int | None = None) -> list[can.Message]:
    return list(itertools.islice(replay.frames(threading.Event()), count))


def test_replays_every_frame_in_log_order(log_path: Path, log_messages: list[can.Message]) -> None:
    replay = LogReplay(log_path, speed=0)
    got = _take(replay)
    assert [_key(m) for m in got] == [_key(m) for m in log_messages]
    assert replay.ended
    assert all(not m.is_extended_id and not m.is_remote_frame for m in got[:100])


def test_channel_keeps_only_that_channel(log_path: Path, log_messages: list[can.Message]) -> None:
    got = _take(LogReplay(log_path, speed=0, channel="can1"))
    assert [_key(m) for m in got] == [_key(m) for m in log_messages if m.channel == "can1"]
    assert len(got) == 45_000


def test_offset_starts_at_first_frame_at_or_after_it(log_path: Path, log_messages: list[can.Message]) -> None:
    got = _take(LogReplay(log_path, speed=0, offset=30.0), 10)
    expected_index = next(i for i, m in enumerate(log_messages) if m.timestamp >= FIRST + 30.0)
    assert log_messages[expected_index - 1].timestamp < FIRST + 30.0
    assert [_key(m) for m in got] == [_key(m) for m in log_messages[expected_index : expected_index + 10]]


def test_offset_counts_on_the_whole_log_timeline_when_filtering(
    log_path: Path, log_messages: list[can.Message]
) -> None:
    # Two buses of one car replayed with one offset must start at the same instant.
    first = _take(LogReplay(log_path, speed=0, offset=12.5, channel="can1"), 1)[0]
    expected = next(m for m in log_messages if m.channel == "can1" and m.timestamp >= FIRST + 12.5)
    assert _key(first) == _key(expected)


def test_offset_past_the_end_is_an_error_without_loop(log_path: Path) -> None:
    with pytest.raises(ValueError, match="past the end"):
        LogReplay(log_path, offset=DURATION + 1)


def test_offset_past_the_end_wraps_when_looping(log_path: Path, log_messages: list[can.Message]) -> None:
    timestamps = [m.timestamp for m in log_messages]
    gap = statistics.median(b - a for a, b in itertools.pairwise(timestamps) if b > a)
    period = DURATION + gap
    wrapped = LogReplay(log_path, speed=0, offset=3 * period + 5.0, loop=True)
    direct = LogReplay(log_path, speed=0, offset=5.0)
    assert [_key(m) for m in _take(wrapped, 50)] == [_key(m) for m in _take(direct, 50)]


def test_loop_restarts_from_the_beginning_with_increasing_timestamps(
    log_path: Path, log_messages: list[can.Message]
) -> None:
    replay = LogReplay(log_path, speed=0, offset=59.9, loop=True, channel="can0")
    got = _take(replay, 2_000)
    timestamps = [m.timestamp for m in got]
    assert all(a <= b for a, b in itertools.pairwise(timestamps))
    wrap = next(i for i, (a, b) in enumerate(itertools.pairwise(got)) if b.timestamp - FIRST > DURATION) + 1
    assert got[wrap - 1].timestamp < got[wrap].timestamp  # strictly, across the seam
    can0 = [m for m in log_messages if m.channel == "can0"]
    shift = got[wrap].timestamp - can0[0].timestamp
    assert DURATION < shift < DURATION + 0.001
    after = got[wrap : wrap + 100]
    assert [(m.arbitration_id, bytes(m.data)) for m in after] == [
        (m.arbitration_id, bytes(m.data)) for m in can0[:100]
    ]
    assert [m.timestamp - shift for m in after] == pytest.approx([m.timestamp for m in can0[:100]], abs=1e-6)
    assert not replay.ended


def test_every_pass_shifts_by_duration_plus_median_gap(tiny_log: Path) -> None:
    # tiny.log spans 0.4 s; its positive gaps are 0.1, 0.2, 0.1 s: median 0.1 s.
    got = _take(LogReplay(tiny_log, speed=0, loop=True), 15)
    timestamps = [m.timestamp for m in got]
    base = [100.0, 100.0, 100.1, 100.3, 100.4]
    assert timestamps == pytest.approx([t + 0.5 * k for k in range(3) for t in base])
    assert [m.channel for m in got[:5]] == ["can0", "can1", "can0", "can1", "can0"]


def test_yielded_messages_are_fresh_objects(tiny_log: Path) -> None:
    replay = LogReplay(tiny_log, speed=0, loop=True)
    first_pass, second_pass = _take(replay, 5), _take(replay, 5)
    first_pass[0].data[0] = 0xAA
    assert second_pass[0].data[0] == 0 and _take(replay, 1)[0].data[0] == 0


def test_speed_four_replays_two_seconds_in_half_a_second(log_path: Path) -> None:
    replay = LogReplay(log_path, speed=4, offset=10.0)
    origin = FIRST + 10.0
    early = 0.0
    started = time.monotonic()
    for message in replay.frames(threading.Event()):
        elapsed = time.monotonic() - started
        early = max(early, (message.timestamp - origin) / 4 - elapsed)
        if message.timestamp >= origin + 2.0:
            break
    wall = time.monotonic() - started
    assert 0.4 <= wall <= 1.5
    assert early < 0.002  # never more than the 0.5 ms skip (plus clock noise) ahead


def test_stop_is_honoured_promptly_while_waiting(tiny_log: Path) -> None:
    # At speed 0.01 the second can0 frame (0.1 s later) is 10 s away: the reader waits.
    replay = LogReplay(tiny_log, speed=0.01, channel="can0")
    stop = threading.Event()
    first_frame = threading.Event()

    def read() -> None:
        for _ in replay.frames(stop):
            first_frame.set()

    reader = threading.Thread(target=read)
    reader.start()
    assert first_frame.wait(timeout=5)
    stopped_at = time.monotonic()
    stop.set()
    reader.join(timeout=2)
    assert not reader.is_alive()
    assert time.monotonic() - stopped_at < 0.1
    assert not replay.ended


def test_stop_set_before_start_yields_nothing(log_path: Path) -> None:
    stop = threading.Event()
    stop.set()
    assert list(LogReplay(log_path, speed=0).frames(stop)) == []


def test_closed_replay_refuses_to_run(tiny_log: Path) -> None:
    replay = LogReplay(tiny_log, speed=0)
    with replay:
        assert len(_take(replay)) == 5
    assert replay.ended
    replay.close()  # twice is fine
    with pytest.raises(SourceError, match="closed"):
        _take(replay)


def test_missing_file_is_a_source_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-such.log"
    with pytest.raises(SourceError, match=r"no-such\.log"):
        LogReplay(missing)


@pytest.mark.parametrize("content", ["", "this is not a candump line\n"])
def test_empty_or_garbage_log_is_a_source_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.log"
    path.write_text(content)
    with pytest.raises(SourceError, match=r"bad\.log"):
        LogReplay(path)


def test_unknown_channel_names_the_channels_there_are(tiny_log: Path) -> None:
    with pytest.raises(SourceError, match="can0, can1"):
        LogReplay(tiny_log, channel="vcan0")


@pytest.mark.parametrize(("speed", "offset"), [(-1.0, 0.0), (float("nan"), 0.0), (1.0, -0.5)])
def test_bad_speed_or_offset_is_refused(tiny_log: Path, speed: float, offset: float) -> None:
    with pytest.raises(ValueError):
        LogReplay(tiny_log, speed=speed, offset=offset)


def test_describe_says_what_is_replayed(tiny_log: Path) -> None:
    text = LogReplay(tiny_log, speed=2, channel="can0", loop=True).describe()
    assert "tiny.log" in text and "can0" in text and "speed 2" in text and "looping" in text
