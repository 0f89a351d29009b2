"""Both decode paths against cantools on DBCs written from seeds (`dbc_styles`) and
random frames: every value, bit for bit, and every counter.

The reference is cantools' `Message.decode`. Where a message's signals overlap,
cantools refuses the frame ("unpacking failed") and we decode each signal as
declared; the reference for such a message is then cantools on a copy of it holding
one signal and the multiplexers (whose defined values are kept as their value
table), which is cantools' own answer for that signal alone.
"""

from __future__ import annotations

import random
import struct
from collections import defaultdict

import cantools
import pytest
from cantools.database.can import Database, Message, Signal
from cantools.database.conversion import BaseConversion

from oodida.hw.dbc import SignalDecoder
from oodida.hw.frames import ERROR_FLAG, REMOTE_FLAG, FrameBatch
from tests.hw.dbc_styles import STYLES, make_dbc

SEEDS = range(36)
FRAMES = 600

Values = dict[str, list[tuple[int, bytes]]]  # signal -> [(frame index, float64 bits)]


def _bits64(value: float) -> bytes:
    return struct.pack("<d", float(value))


def _load(text: str) -> Database:
    db = cantools.database.load_string(text, database_format="dbc", strict=False)
    assert isinstance(db, Database)
    return db


def _bits(signal: Signal) -> set[int]:
    """The payload bits (byte * 8 + bit, LSB = 0) a signal covers."""
    if signal.byte_order == "little_endian":
        return set(range(signal.start, signal.start + signal.length))
    msb = 8 * (signal.start // 8) + 7 - signal.start % 8  # network order
    return {8 * (p // 8) + 7 - p % 8 for p in range(msb, msb + signal.length)}


def _exclusive(message: Message, a: Signal, b: Signal) -> bool:
    """Never in one frame: under one multiplexer with disjoint selecting values."""
    def ancestry(signal: Signal) -> dict[str, set[int]]:
        out = {}
        while signal.multiplexer_signal is not None:
            out[signal.multiplexer_signal] = set(signal.multiplexer_ids or ())
            signal = message.get_signal_by_name(signal.multiplexer_signal)
        return out

    first, second = ancestry(a), ancestry(b)
    return any(mux in second and not ids & second[mux] for mux, ids in first.items())


def _overlaps(message: Message) -> bool:
    signals = message.signals
    return any(
        _bits(a) & _bits(b) and not _exclusive(message, a, b)
        for i, a in enumerate(signals) for b in signals[i + 1:]
    )


def _keys(message: Message, mux: Signal) -> dict[int, str]:
    keys = {k: str(k) for child in message.signals if child.multiplexer_signal == mux.name
            for k in child.multiplexer_ids or ()}
    keys.update({int(k): str(v) for k, v in (mux.conversion.choices or {}).items()})
    return keys


def _copy(signal: Signal, choices: dict[int, str] | None = None, selector: bool = False) -> Signal:
    conversion = signal.conversion
    if choices is not None:
        conversion = BaseConversion.factory(conversion.scale, conversion.offset, choices, conversion.is_float)
    return Signal(
        name=signal.name, start=signal.start, length=signal.length, byte_order=signal.byte_order,
        is_signed=signal.is_signed, conversion=conversion, is_multiplexer=signal.is_multiplexer or selector,
        multiplexer_ids=signal.multiplexer_ids, multiplexer_signal=signal.multiplexer_signal,
    )


def _marked(message: Message) -> Message:
    """The message with every signal that SG_MUL_VAL_ names as a multiplexer marked
    as one (`hw.mux`'s one deliberate difference from cantools, which otherwise never
    decodes the signals under a multiplexer marked `m`)."""
    named = {s.multiplexer_signal for s in message.signals if s.multiplexer_signal}
    if all(s.is_multiplexer for s in message.signals if s.name in named):
        return message
    return Message(frame_id=message.frame_id, name=message.name, length=message.length,
                   signals=[_copy(s, selector=s.name in named) for s in message.signals],
                   is_extended_frame=message.is_extended_frame, strict=False)


class Reference:
    """cantools' answer for every frame, as {name: [(index, bits)]} and counters."""

    def __init__(self, db: Database, wanted: set[str] | None) -> None:
        self.db = db
        self.wanted = wanted
        self.by_id = {m.frame_id: _marked(m) for m in db.messages}
        self.alone: dict[tuple[int, str], Message] = {}
        for message in self.by_id.values():
            if not _overlaps(message):
                continue
            muxes = [_copy(s, _keys(message, s)) for s in message.signals if s.is_multiplexer]
            for signal in message.signals:
                if not signal.is_multiplexer:
                    self.alone[message.frame_id, signal.name] = Message(
                        frame_id=message.frame_id, name=message.name, length=message.length,
                        signals=[*muxes, _copy(signal)], is_extended_frame=message.is_extended_frame,
                        strict=False)

    def wants(self, message: Message, signal: str) -> bool:
        return self.wanted is None or f"{message.name}.{signal}" in self.wanted

    def run(self, frames: list[tuple[int, bytes]]) -> tuple[Values, dict[str, int]]:
        values: Values = defaultdict(list)
        counts = dict(unknown=0, malformed=0, errors=0, remote=0)
        for index, (frame_id, data) in enumerate(frames):
            if frame_id & ERROR_FLAG:
                counts["errors"] += 1
                continue
            if frame_id & REMOTE_FLAG:
                counts["remote"] += 1
                continue
            message = self.by_id.get(frame_id)
            if message is None:
                counts["unknown"] += 1
                continue
            if len(data) < message.length:
                counts["malformed"] += 1
                continue
            if not any(self.wants(message, s.name) for s in message.signals):
                continue
            try:
                decoded = self._decode(message, data)
            except Exception:
                counts["malformed"] += 1
                continue
            for name, value in decoded.items():
                if self.wants(message, name):
                    values[f"{message.name}.{name}"].append((index, _bits64(value)))
        return values, counts

    def _decode(self, message: Message, data: bytes) -> dict[str, float]:
        if not _overlaps(message):
            return message.decode(data, decode_choices=False, scaling=True)
        out = {}
        mux_values = None
        for signal in message.signals:
            if signal.is_multiplexer:
                continue
            decoded = self.alone[message.frame_id, signal.name].decode(data, decode_choices=False, scaling=True)
            mux_values = {k: v for k, v in decoded.items() if k != signal.name}
            if signal.name in decoded:
                out[signal.name] = decoded[signal.name]
        if mux_values is None:  # only multiplexers: cantools can decode it whole
            return message.decode(data, decode_choices=False, scaling=True)
        out.update(mux_values)
        return out


def _frames(db: Database, rng: random.Random) -> list[tuple[int, bytes]]:
    messages = db.messages
    frames = []
    for _ in range(FRAMES):
        roll = rng.random()
        if roll < 0.04:
            frames.append((rng.randint(0, 0x7FF) | ERROR_FLAG, bytes(8)))
            continue
        if roll < 0.07:
            frames.append((rng.choice(messages).frame_id | REMOTE_FLAG, b""))
            continue
        if roll < 0.12:
            frame_id = rng.randint(0, 0x7FF)
            if frame_id not in {m.frame_id for m in messages}:
                frames.append((frame_id, bytes(rng.getrandbits(8) for _ in range(8))))
                continue
        message = rng.choice(messages)
        length = message.length
        if rng.random() < 0.05:
            length = rng.randint(0, message.length - 1)  # short: malformed
        elif rng.random() < 0.05:
            length = min(64, message.length + rng.randint(1, 4))  # excess bytes are ignored
        data = bytearray(rng.getrandbits(8) for _ in range(length))
        if data and rng.random() < 0.3:
            data[0] &= rng.choice((0x01, 0x03, 0x13, 0x7F))  # steer multiplexers to small values
        frames.append((message.frame_id, bytes(data)))
    return frames


def _per_frame(decoder: SignalDecoder, frames: list[tuple[int, bytes]]) -> Values:
    values: Values = defaultdict(list)
    for index, (frame_id, data) in enumerate(frames):
        for name, value in decoder.decode(frame_id, data) or ():
            values[decoder.resolve(name)].append((index, _bits64(value)))
    return values


def _batched(decoder: SignalDecoder, frames: list[tuple[int, bytes]]) -> Values:
    batch = FrameBatch.from_frames([(float(i), frame_id, data) for i, (frame_id, data) in enumerate(frames)])
    values: Values = {}
    for name, (t, v) in decoder.decode_batch(batch).items():
        values[decoder.resolve(name)] = [(int(i), _bits64(x)) for i, x in zip(t.tolist(), v.tolist(), strict=True)]
    return values


def _counters(decoder: SignalDecoder) -> dict[str, int]:
    return dict(unknown=decoder.unknown_frames, malformed=decoder.malformed_frames,
                errors=getattr(decoder, "error_frames", 0), remote=getattr(decoder, "remote_frames", 0))


def test_the_generated_dbcs_cover_every_style() -> None:
    styles = {m.name.split("_", 1)[1] for seed in SEEDS for m in _load(make_dbc(seed)).messages}
    assert styles == set(STYLES)
    # cantools itself refuses the overlapping ones, which is why the reference decodes them signal by signal
    assert any(_overlaps(m) for seed in SEEDS for m in _load(make_dbc(seed)).messages)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("subset", [False, True], ids=["all-signals", "some-signals"])
def test_both_paths_equal_cantools(seed: int, subset: bool) -> None:
    db = _load(make_dbc(seed))
    rng = random.Random(seed * 7919 + subset)
    names = [f"{m.name}.{s.name}" for m in db.messages for s in m.signals]
    wanted = sorted(rng.sample(names, max(1, len(names) // 3))) if subset else None
    frames = _frames(db, rng)
    want, want_counts = Reference(db, None if wanted is None else set(wanted)).run(frames)
    for run in (_per_frame, _batched):
        decoder = SignalDecoder.from_database(db, wanted)
        got = run(decoder, frames)
        assert dict(got) == dict(want), f"{run.__name__} differs from cantools"
        assert _counters(decoder) == want_counts, run.__name__
        assert decoder.frames == len(frames)
    assert sum(len(v) for v in want.values()) > 0
