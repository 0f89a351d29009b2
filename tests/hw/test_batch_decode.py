"""SignalDecoder.decode_batch: bit for bit cantools' values, counter for counter `decode`'s."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import cantools
import numpy as np
import pytest
from cantools.database.can import Database
from hypothesis import given, settings
from hypothesis import strategies as st

from oodida.hw.dbc import SignalDecoder
from oodida.hw.frames import FrameBatch
from tests.hw.dbc_styles import SYNTHETIC_DBC

Decoded = dict[str, tuple[np.ndarray, np.ndarray]]


def _bits_equal(got: np.ndarray, expected: np.ndarray) -> bool:
    """Equal bit patterns (so -0.0 differs from 0.0), any NaN equal to any NaN, as cantools'
    NaNs carry no meaning in their payload bits."""
    if got.shape != expected.shape or got.dtype != np.float64:
        return False
    both_nan = np.isnan(got) & np.isnan(expected)
    return bool(np.array_equal(got.view(np.int64)[~both_nan], expected.view(np.int64)[~both_nan]))


def _per_frame(decoder: SignalDecoder, frames: list[tuple[float, int, bytes]]) -> Decoded:
    """What `decode` gives frame by frame, gathered per signal."""
    gathered: dict[str, tuple[list[float], list[float]]] = {}
    for timestamp, frame_id, data in frames:
        for name, value in decoder.decode(frame_id, data) or ():
            times, values = gathered.setdefault(name, ([], []))
            times.append(timestamp)
            values.append(value)
    return {name: (np.array(t), np.array(v, dtype=np.float64)) for name, (t, v) in gathered.items()}


def _cantools(db: Database, frames: list[tuple[float, int, bytes]]) -> Decoded:
    """cantools' values per canonical signal name, frames it cannot decode left out."""
    gathered: dict[str, tuple[list[float], list[float]]] = {}
    for timestamp, frame_id, data in frames:
        try:
            message = db.get_message_by_frame_id(frame_id)
            decoded = message.decode(data, decode_choices=False, scaling=True)
        except (KeyError, cantools.database.DecodeError):
            continue
        assert isinstance(decoded, dict)
        for signal, value in decoded.items():
            times, values = gathered.setdefault(f"{message.name}.{signal}", ([], []))
            times.append(timestamp)
            values.append(float(value))  # type: ignore[arg-type]
    return {name: (np.array(t), np.array(v, dtype=np.float64)) for name, (t, v) in gathered.items()}


def _assert_same(got: Decoded, expected: Decoded) -> int:
    assert sorted(got) == sorted(expected)
    for name, (times, values) in expected.items():
        assert np.array_equal(got[name][0], times), name
        assert _bits_equal(got[name][1], values), (name, got[name][1][:5], values[:5])
    return sum(values.size for _, values in expected.values())


# --- the real log ----------------------------------------------------------------


@pytest.fixture(scope="module")
def can0_timed(log_messages: list) -> list[tuple[float, int, bytes]]:
    return [(m.timestamp, m.arbitration_id, bytes(m.data)) for m in log_messages if m.channel == "can0"]


def test_every_value_of_every_signal_equals_cantools_on_the_whole_log(
    dbc_path: Path, db: Database, can0_timed: list[tuple[float, int, bytes]]
) -> None:
    decoder = SignalDecoder(dbc_path)
    got = decoder.decode_batch(FrameBatch.from_frames(can0_timed))
    checked = _assert_same(got, _cantools(db, can0_timed))
    assert checked > 200_000  # every signal of the 39k known frames, not a vacuous pass
    known = {message.frame_id for message in db.messages}
    assert decoder.frames == len(can0_timed)
    assert decoder.unknown_frames == sum(1 for _, frame_id, _ in can0_timed if frame_id not in known)
    assert decoder.malformed_frames == 0


@pytest.mark.parametrize("size", [1, 7, 1000])
def test_batches_of_any_size_give_what_one_batch_gives(
    dbc_path: Path, can0_timed: list[tuple[float, int, bytes]], size: int
) -> None:
    frames = can0_timed[:3000]
    whole = SignalDecoder(dbc_path, ["SPEED", "STEER_ANGLE_SENSOR.STEER_ANGLE", "STEER_RATE"])
    expected = whole.decode_batch(FrameBatch.from_frames(frames))
    pieces = SignalDecoder(dbc_path, ["SPEED", "STEER_ANGLE_SENSOR.STEER_ANGLE", "STEER_RATE"])
    parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for start in range(0, len(frames), size):
        for name, tv in pieces.decode_batch(FrameBatch.from_frames(frames[start : start + size])).items():
            parts.setdefault(name, []).append(tv)
    joined = {name: (np.concatenate([t for t, _ in p]), np.concatenate([v for _, v in p])) for name, p in parts.items()}
    _assert_same(joined, expected)
    assert (pieces.frames, pieces.unknown_frames) == (whole.frames, whole.unknown_frames) == (3000,
                                                                                              whole.unknown_frames)


def test_short_and_unknown_frames_are_counted_as_decode_counts_them(
    dbc_path: Path, can0_timed: list[tuple[float, int, bytes]]
) -> None:
    rng = np.random.default_rng(5)
    frames = []
    for timestamp, frame_id, data in can0_timed[:5000]:
        if rng.random() < 0.1:
            data = data[: int(rng.integers(0, len(data) + 1))]  # some cut short, some whole
        frames.append((timestamp, frame_id, data + (b"\xee" * 3 if rng.random() < 0.05 else b"")))
    batch_decoder = SignalDecoder(dbc_path)
    frame_decoder = SignalDecoder(dbc_path)
    _assert_same(batch_decoder.decode_batch(FrameBatch.from_frames(frames)), _per_frame(frame_decoder, frames))
    assert batch_decoder.malformed_frames == frame_decoder.malformed_frames > 100
    assert batch_decoder.unknown_frames == frame_decoder.unknown_frames > 1000
    assert batch_decoder.frames == frame_decoder.frames == 5000


def test_an_empty_batch_decodes_to_nothing(dbc_path: Path) -> None:
    decoder = SignalDecoder(dbc_path)
    assert decoder.decode_batch(FrameBatch.from_frames([])) == {}
    assert decoder.frames == 0


# --- unusual layouts, random payloads ----------------------------------------------


@functools.cache
def _synthetic() -> Database:
    db = cantools.database.load_string(SYNTHETIC_DBC, database_format="dbc", strict=False)
    assert isinstance(db, Database)
    return db


@st.composite
def _synthetic_frames(draw: st.DrawFn) -> list[tuple[float, int, bytes]]:
    db = _synthetic()
    lengths = {m.frame_id: m.length for m in db.messages} | {0x7FF: 8}  # 0x7FF: unknown to this DBC
    ids = sorted(lengths)
    frames = []
    for index in range(draw(st.integers(0, 40))):
        frame_id = draw(st.sampled_from(ids))
        length = lengths[frame_id]
        size = draw(st.one_of(st.just(length), st.integers(0, length + 2)))
        payload = draw(st.binary(min_size=size, max_size=size))
        if frame_id == 256 and size and draw(st.booleans()):
            payload = bytes([draw(st.sampled_from([0, 1]))]) + payload[1:]  # mostly valid muxes
        frames.append((float(index), frame_id, payload))
    return frames


@settings(max_examples=200, deadline=None)
@given(frames=_synthetic_frames())
def test_multiplexed_float_fd_and_extended_messages_equal_decode(frames: list[tuple[float, int, bytes]]) -> None:
    batch_decoder = SignalDecoder.from_database(_synthetic())
    frame_decoder = SignalDecoder.from_database(_synthetic())
    got = batch_decoder.decode_batch(FrameBatch.from_frames(frames))
    _assert_same(got, _per_frame(frame_decoder, frames))
    counters = ("frames", "unknown_frames", "malformed_frames")
    assert [getattr(batch_decoder, c) for c in counters] == [getattr(frame_decoder, c) for c in counters]


def test_multiplexed_frames_take_the_vectorised_path_and_equal_cantools() -> None:
    db = _synthetic()
    decoder = SignalDecoder.from_database(db, ["MUXED.MUX", "MUXED.A", "MUXED.B", "MUXED.C"])
    assert not decoder._batch_plans[256].per_frame  # the layout is within the fast path
    rng = np.random.default_rng(1)
    frames = [(float(i), 256, bytes([i % 3]) + rng.bytes(7)) for i in range(300)]
    got = decoder.decode_batch(FrameBatch.from_frames(frames))
    _assert_same(got, _cantools(db, frames))
    assert decoder.malformed_frames == 100  # multiplexer value 2 is not in the DBC
    assert got["MUXED.A"][0].size == got["MUXED.B"][0].size == 100


SCALES = [1, 2, -3, 0.5, -0.25, 0.1, 0.01, 0.0573, 1e-3, 1e6]
OFFSETS = [0, -40, 7, 1.5, -0.5, 0.1, -1000.25]


@st.composite
def _signal(draw: st.DrawFn) -> tuple[str, int]:
    """One DBC signal line at any legal position of an 8-byte message, and its length."""
    length = draw(st.integers(1, 64))
    big = draw(st.booleans())
    first = draw(st.integers(0, 64 - length))  # LSB (Intel) or MSB in network order (Motorola)
    start = 8 * (first // 8) + 7 - first % 8 if big else first
    signed = "-" if draw(st.booleans()) else "+"
    scale, offset = draw(st.sampled_from(SCALES)), draw(st.sampled_from(OFFSETS))
    line = f' SG_ S : {start}|{length}@{0 if big else 1}{signed} ({scale!r},{offset!r}) [0|0] "" ECU'
    return line, length


@settings(max_examples=300, deadline=None)
@given(signal=_signal(), payloads=st.lists(st.binary(min_size=8, max_size=8), min_size=1, max_size=30))
def test_any_signal_layout_equals_cantools_bit_for_bit(signal: tuple[str, int], payloads: list[bytes]) -> None:
    line, length = signal
    text = f'VERSION ""\n\nNS_ :\n\nBS_:\n\nBU_: ECU\n\nBO_ 100 ONE: 8 ECU\n{line}\n'
    db = cantools.database.load_string(text, database_format="dbc", strict=False)
    assert isinstance(db, Database)
    payloads += [b"\xff" * 8, b"\x00" * 8, b"\x80" + b"\x00" * 7, b"\x00" * 7 + b"\x01"]
    frames = [(float(i), 100, payload) for i, payload in enumerate(payloads)]
    decoder = SignalDecoder.from_database(db)
    assert decoder._batch_plans[100].per_frame == (length > 52 or _int_overflow(db))
    _assert_same(decoder.decode_batch(FrameBatch.from_frames(frames)), _cantools(db, frames))


def _int_overflow(db: Database) -> bool:
    signal = db.messages[0].signals[0]
    scale, offset = signal.conversion.scale, signal.conversion.offset
    if isinstance(scale, int) and isinstance(offset, int):
        return (1 << signal.length) * abs(scale) + abs(offset) >= 1 << 53
    return isinstance(scale, int) and (1 << signal.length) * abs(scale) >= 1 << 53


def test_negative_zero_comes_out_as_cantools_makes_it() -> None:
    # raw 0 times a negative scale is -0.0; adding the offset (even 0) makes it +0.0.
    text = 'VERSION ""\n\nBU_: ECU\n\nBO_ 100 ONE: 8 ECU\n SG_ S : 0|8@1+ (-0.5,0) [0|0] "" ECU\n'
    db = cantools.database.load_string(text, database_format="dbc", strict=False)
    assert isinstance(db, Database)
    got = SignalDecoder.from_database(db).decode_batch(FrameBatch.from_frames([(0.0, 100, bytes(8))]))
    expected = float(db.decode_message(100, bytes(8), decode_choices=False)["S"])  # type: ignore[arg-type]
    assert math.copysign(1.0, got["ONE.S"][1][0]) == math.copysign(1.0, expected)


def test_a_selection_comes_out_under_the_names_asked_for_with_cantools_values(
    dbc_path: Path, db: Database, can0_timed: list[tuple[float, int, bytes]]
) -> None:
    decoder = SignalDecoder(dbc_path, ["SPEED", "STEER_ANGLE_SENSOR.STEER_ANGLE", "STEER_RATE"])
    got = decoder.decode_batch(FrameBatch.from_frames(can0_timed))
    reference = _cantools(db, can0_timed)
    expected = {name: reference[decoder.resolve(name)] for name in decoder.signal_names}
    assert _assert_same(got, expected) > 2_000
