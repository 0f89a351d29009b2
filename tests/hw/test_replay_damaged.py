"""Replaying logs as they come from the field: integer channels, frames out of order,
error and remote frames, unreadable lines, cut-off files, .asc time bases."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from pathlib import Path

import can
import numpy as np
import pytest

from oodida.agent.pump import Pump
from oodida.agent.store import SignalStore
from oodida.hw.dbc import SignalDecoder
from oodida.hw.errors import SourceError
from oodida.hw.frames import FrameBatch
from oodida.hw.logread import RELATIVE
from oodida.hw.sources import LogReplay
from oodida.wire.messages import WindowSpec
from tests.hw.paths import DBC, LOG

SMALL_DBC = """VERSION ""

NS_ :

BS_:

BU_: N

BO_ 291 PLAIN: 2 N
 SG_ VALUE : 0|16@1+ (1,0) [0|0] "" N

BO_ 2576980377 WIDE_ID: 8 N
 SG_ ANYTHING : 0|32@1+ (1,0) [0|0] "" N
"""


@pytest.fixture
def small_dbc(tmp_path: Path) -> Path:
    path = tmp_path / "small.dbc"
    path.write_text(SMALL_DBC)
    return path


def _write(path: Path, messages: list[can.Message]) -> Path:
    with can.Logger(path) as writer:
        for message in messages:
            writer.on_message_received(message)
    return path


def _data(t: float, value: int, channel: object = 0) -> can.Message:
    return can.Message(timestamp=t, arbitration_id=0x123, is_extended_id=False,
                       data=value.to_bytes(2, "little"), channel=channel)


def _all(replay: LogReplay) -> list[can.Message]:
    return list(replay.frames(threading.Event()))


def _pump_all(replay: LogReplay, decoder: SignalDecoder) -> SignalStore:
    store = SignalStore(retention=1e9, max_samples=1_000_000)
    store.declare(list(decoder.signal_names))
    pump = Pump("test", replay, decoder, store)
    pump.start()
    pump._thread.join(30)
    assert pump.state == "ended", pump.error
    return store


# --- 5: channels -----------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".asc", ".blf", ".trc"])
def test_a_configured_channel_finds_the_integer_channels_of_a_log(tmp_path: Path, suffix: str) -> None:
    path = _write(tmp_path / f"two{suffix}", [_data(1.0 + i / 10, i, channel=i % 2) for i in range(10)])
    read = list(can.LogReader(path))
    assert {type(m.channel) for m in read} == {int}  # as python-can reads them
    odd = read[1].channel  # .trc numbers channels from 1, the others from 0
    got = _all(LogReplay(path, speed=0, channel=str(odd)))
    assert [int.from_bytes(m.data, "little") for m in got] == [1, 3, 5, 7, 9]


def test_a_channel_the_log_lacks_names_the_ones_it_has(tmp_path: Path) -> None:
    path = _write(tmp_path / "two.asc", [_data(1.0 + i / 10, i, channel=i % 2) for i in range(4)])
    with pytest.raises(SourceError, match=r"no frames on channel '7'; its channels are 0, 1"):
        LogReplay(path, speed=0, channel="7")


# --- 6: out of order ---------------------------------------------------------------


def test_a_log_out_of_timestamp_order_replays_in_timestamp_order(tmp_path: Path, caplog) -> None:
    path = tmp_path / "merged.log"
    path.write_text(
        "(10.0) can0 123#0000\n(10.2) can0 123#0200\n(10.1) can0 123#0100\n"
        "(10.3) can0 123#0300\n(10.3) can0 123#0400\n(9.5) can0 123#0500\n"
    )
    with caplog.at_level(logging.WARNING, logger="oodida.hw.replay"):
        replay = LogReplay(path, speed=0)
    got = [(m.timestamp, m.data[0]) for m in _all(replay)]
    assert got == [(9.5, 5), (10.0, 0), (10.1, 1), (10.2, 2), (10.3, 3), (10.3, 4)]  # stable for ties
    assert "2 frames out of timestamp order; replaying it in timestamp order" in caplog.text
    assert "out of timestamp order" in replay.describe()


async def test_a_shuffled_log_fills_its_window_like_the_sorted_one(tmp_path: Path) -> None:
    """The RAV4 drive's first 3 s with every 50-line block reversed: `oodida try`'s
    path (replay, pump, store, a `next` window) gives the sorted log's answer, with no
    traceback in the loop's callbacks and no stalled window."""
    lines = LOG.read_text().splitlines(keepends=True)
    first = float(lines[0].split(")")[0][1:])
    head = [line for line in lines if float(line.split(")")[0][1:]) < first + 3.0]
    shuffled = list(itertools.chain.from_iterable(reversed(head[i : i + 50]) for i in range(0, len(head), 50)))
    (tmp_path / "sorted.log").write_text("".join(head))
    (tmp_path / "shuffled.log").write_text("".join(shuffled))

    async def window(path: Path):
        decoder = SignalDecoder(DBC, ["SPEED"])
        store = SignalStore(retention=1e9, max_samples=1_000_000)
        store.declare(["SPEED"])
        store.bind_loop(asyncio.get_running_loop())
        loop_errors: list[dict] = []
        asyncio.get_running_loop().set_exception_handler(lambda _loop, context: loop_errors.append(context))
        pump = Pump("t", LogReplay(path, speed=0, channel="can0"), decoder, store)
        waiting = asyncio.create_task(store.window({"SPEED": "SPEED"}, WindowSpec(amount=2.0), timeout=20))
        await asyncio.sleep(0)
        pump.start()
        try:
            return await waiting, loop_errors, store
        finally:
            pump.stop()

    want, _, _ = await window(tmp_path / "sorted.log")
    got, errors, store = await window(tmp_path / "shuffled.log")
    assert errors == []
    assert got.series["SPEED"].t.tolist() == want.series["SPEED"].t.tolist()
    assert got.series["SPEED"].v.tolist() == want.series["SPEED"].v.tolist()
    assert got.samples["SPEED"] > 80


def test_the_store_drops_and_counts_samples_older_than_the_newest_held(caplog) -> None:
    """A live source whose clock steps back between two reads: the late samples are
    dropped and counted (logged once), per frame and per batch alike, and every
    buffer stays in order."""
    store = SignalStore()
    store.declare(["a", "b"])
    store.add_batch({"a": (np.array([1.0, 2.0, 3.0]), np.arange(3.0))})
    with caplog.at_level(logging.WARNING, logger="oodida.agent.store"):
        store.add_batch({"a": (np.array([2.5, 2.9, 3.0, 4.0]), np.arange(3.0, 7.0))})
        store.add_batch({"a": (np.array([0.5]), np.array([9.0]))})
        for t in (1.0, 2.0, 0.5, 3.0, 1.5):
            store.add(t, [("b", t)])
    t, v = store._buffers["a"].ordered()
    assert t.tolist() == [1.0, 2.0, 3.0, 3.0, 4.0] and v.tolist() == [0.0, 1.0, 2.0, 5.0, 6.0]
    assert store._buffers["b"].ordered()[0].tolist() == [1.0, 2.0, 3.0]
    assert store.late_samples == {"a": 3, "b": 2}
    assert caplog.text.count("samples stamped before the newest one held were dropped") == 2  # once per signal


def test_a_batch_out_of_timestamp_order_is_decoded_in_time_order(small_dbc: Path) -> None:
    """Within one read the decoder sorts (stably), so the store gets ascending series."""
    frames = [(1.0, 0x123, b"\x01\x00"), (1.2, 0x123, b"\x03\x00"), (1.1, 0x123, b"\x02\x00"),
              (1.2, 0x123, b"\x04\x00"), (0.9, 0x123, b"\x00\x00")]
    decoder = SignalDecoder(small_dbc)
    t, v = decoder.decode_batch(FrameBatch.from_frames(frames))["PLAIN.VALUE"]
    assert t.tolist() == [0.9, 1.0, 1.1, 1.2, 1.2] and v.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


# --- 7: error and remote frames ----------------------------------------------------


def test_error_frames_are_counted_as_errors_and_remote_frames_as_remote(tmp_path: Path, small_dbc: Path) -> None:
    path = _write(tmp_path / "special.blf", [
        _data(1.0, 7),
        can.Message(timestamp=1.1, arbitration_id=0x19999999, is_extended_id=True, is_error_frame=True,
                    data=bytes(range(8)), channel=0),
        can.Message(timestamp=1.2, arbitration_id=0x123, is_remote_frame=True, dlc=2, channel=0),
        can.Message(timestamp=1.3, arbitration_id=0x19999999, is_extended_id=True, data=bytes(8), channel=0),
        _data(1.4, 9),
    ])
    for batched in (False, True):
        decoder = SignalDecoder(small_dbc)
        replay = LogReplay(path, speed=0)
        if batched:
            decoded = {}
            for batch in replay.batches(threading.Event()):
                decoded.update(decoder.decode_batch(batch))
            values = {name: v.tolist() for name, (_, v) in decoded.items()}
        else:
            values = {}
            for m in _all(replay):
                flags = (0x20000000 if m.is_error_frame else 0) | (0x40000000 if m.is_remote_frame else 0)
                key = m.arbitration_id | flags
                for name, value in decoder.decode(key, bytes(m.data)) or ():
                    values.setdefault(name, []).append(value)
        assert values == {"PLAIN.VALUE": [7.0, 9.0], "WIDE_ID.ANYTHING": [0.0]}
        counts = (decoder.error_frames, decoder.remote_frames, decoder.malformed_frames, decoder.unknown_frames)
        assert counts == (1, 1, 0, 0)
        assert decoder.frames == 5


def test_error_and_remote_frames_through_the_pump(tmp_path: Path, small_dbc: Path) -> None:
    path = tmp_path / "special.log"
    # candump -L: an error frame (CAN_ERR_FLAG | bus error) and a remote request
    path.write_text("(1.0) can0 123#0700\n(1.1) can0 20000080#0000000000000000\n"
                    "(1.2) can0 123#R\n(1.3) can0 123#0900\n")
    decoder = SignalDecoder(small_dbc)
    store = _pump_all(LogReplay(path, speed=0), decoder)
    assert store._buffers["PLAIN.VALUE"].ordered()[1].tolist() == [7.0, 9.0]
    assert (decoder.error_frames, decoder.remote_frames, decoder.malformed_frames) == (1, 1, 0)


# --- 8: unreadable lines and cut-off files -------------------------------------------


def test_bad_lines_are_skipped_counted_and_named(tmp_path: Path, caplog) -> None:
    path = tmp_path / "bad.log"
    path.write_text(
        "(1.0) can0 123#0100\n"
        "(1.1) can0 123#0200 trailing words\n"  # too many values to unpack
        "(1.2) can0 12Z#0300\n"  # invalid literal for int() with base 16
        "(1.3) can0 123#0400\n"
        "garbage\n"
        "(1.4) can0 123#0500\n"
    )
    with caplog.at_level(logging.WARNING, logger="oodida.hw.replay"):
        replay = LogReplay(path, speed=0)
    assert [m.data[0] for m in _all(replay)] == [1, 4, 5]
    assert replay.unreadable == 3
    assert f"{path}:2: ValueError: too many values to unpack" in caplog.text
    assert f"{path}:3: ValueError: invalid literal for int() with base 16" in caplog.text
    assert f"{path}:5: ValueError" in caplog.text
    assert "3 unreadable lines skipped" in replay.describe()


def test_a_file_with_nothing_readable_is_refused_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "junk.log"
    path.write_text("this is not\na candump log\n")
    with pytest.raises(SourceError, match=r"holds no readable frames; 2 unreadable .*junk.log:1: ValueError"):
        LogReplay(path, speed=0)


def test_a_log_cut_by_a_power_loss_replays_up_to_the_cut(tmp_path: Path) -> None:
    text = LOG.read_bytes()[:200_000]
    path = tmp_path / "cut.log"
    path.write_bytes(text[: text.rindex(b"\n") + 12])  # the last line stops inside its timestamp
    whole = text.count(b"\n")
    replay = LogReplay(path, speed=0)
    got = _all(replay)
    with can.LogReader(LOG) as reader:
        want = list(itertools.islice(reader, whole))
    assert [(m.timestamp, bytes(m.data)) for m in got] == [(m.timestamp, bytes(m.data)) for m in want]
    assert replay.unreadable == 1


def test_a_binary_log_cut_short_replays_up_to_the_cut(tmp_path: Path) -> None:
    messages = [_data(1533201287.0 + i / 64, i % 256) for i in range(3000)]
    whole = _write(tmp_path / "whole.blf", messages).read_bytes()
    path = tmp_path / "cut.blf"
    path.write_bytes(whole[: len(whole) * 2 // 3])
    got = _all(LogReplay(path, speed=0))
    assert 0 < len(got) < len(messages)
    assert [(m.timestamp, bytes(m.data)) for m in got] == [(m.timestamp, bytes(m.data)) for m in messages[: len(got)]]


# --- 9: .asc time base ---------------------------------------------------------------


def test_asc_replays_in_absolute_time_from_its_header(tmp_path: Path) -> None:
    start = 1533201287.25
    path = _write(tmp_path / "drive.asc", [_data(start + i / 8, i) for i in range(8)])
    replay = LogReplay(path, speed=0)
    got = [m.timestamp for m in _all(replay)]
    assert got == pytest.approx([start + i / 8 for i in range(8)], abs=1e-3)
    assert replay.time_base == "absolute"
    assert "times" not in replay.describe()


def test_asc_without_a_start_time_says_its_times_are_relative(tmp_path: Path) -> None:
    path = tmp_path / "bare.asc"
    path.write_text("base hex  timestamps absolute\nno internal events logged\n"
                    "   0.500000 1  123             Rx   d 2 01 00\n"
                    "   0.750000 1  123             Rx   d 2 02 00\n")
    replay = LogReplay(path, speed=0)
    assert [m.timestamp for m in _all(replay)] == [0.5, 0.75]
    assert replay.time_base == RELATIVE
    assert f"times {RELATIVE}" in replay.describe()


@pytest.mark.parametrize("suffix", [".asc", ".csv", ".trc", ".log", ".log.gz"])
def test_a_bad_line_in_the_middle_of_any_text_format_costs_only_that_line(tmp_path: Path, suffix: str) -> None:
    """Each text format has a header the reader must be given again after a bad line.
    .asc and .trc readers pass over lines they do not recognise (events, comments)
    without an error, so a mangled frame there is lost without being counted."""
    import gzip

    messages = [_data(1533201287.0 + i / 8, i, channel=0) for i in range(12)]
    plain = _write(tmp_path / f"whole{suffix.removesuffix('.gz')}", messages)
    lines = plain.read_text().splitlines(keepends=True)
    # the line holding frame 7: the one whose removal loses it
    bad = next(i for i in range(len(lines)) if _frame_values(tmp_path / f"probe{i}{plain.suffix}",
                                                             lines[:i] + lines[i + 1:])
               == [k for k in range(12) if k != 7])
    lines[bad] = lines[bad][: len(lines[bad]) // 2] + ",@@ 99 ZZ #\n"
    path = tmp_path / f"damaged{suffix}"
    text = "".join(lines)
    path.write_bytes(gzip.compress(text.encode()) if suffix.endswith(".gz") else text.encode())
    replay = LogReplay(path, speed=0)
    got = [int.from_bytes(m.data, "little") for m in _all(replay)]
    assert got == [i for i in range(12) if i != 7]
    if suffix in (".asc", ".trc"):
        assert replay.unreadable == 0
    else:
        assert replay.unreadable == 1
        assert f"{path}:{bad + 1}:" in replay.describe()


def _frame_values(path: Path, lines: list[str]) -> list[int]:
    path.write_text("".join(lines))
    try:
        return [int.from_bytes(m.data, "little") for m in _all(LogReplay(path, speed=0))]
    except SourceError:
        return []
