"""Decoding the few DBC signals an assignment wants, at bus speed, in pure Python.

cantools decodes every signal of a message into a dict on every frame; an agent wants
a handful of signals out of a bus carrying thousands of frames a second, most of them
of no interest. So the DBC is read once, each wanted signal is compiled into a few
integers (shift, mask, sign bit) and two floats (scale, offset), and a frame costs one
dict lookup, one `int.from_bytes` (two if the message mixes byte orders), and a shift
and a mask per wanted signal.

The arithmetic is cantools' own (`raw * scale + offset` with the DBC's factors), so
values equal those of `decode_message(..., decode_choices=False)`, always as floats
(cantools gives ints for integer scalings). Multiplexed messages take a special path
whose rules (which signal is in which frame, which multiplexer values are defined)
come from `hw.mux`, shared with the batch path. Signals the arithmetic cannot decode
exactly (floats, signals that overrun the declared length, signals wider than 52
bits or with integer scalings past 2**53) are decoded by cantools, each alone, as
declared. Deliberate differences: a message whose signals overlap (a DBC bug;
PCS_HUD in the RAV4 DBC) is refused whole by cantools, while here each signal is
decoded as declared, with a note at start; and a multiplexer named by SG_MUL_VAL_
but marked `m` is taken as one (`hw.mux`).

Many frames at once (a log replayed fast, a busy bus drained) go through
`decode_batch` instead: grouped by id and decoded with numpy (`hw.batch`), with the
same values and counters as `decode` frame by frame.

Decoding is channel-agnostic: the caller must send each bus's frames to that bus's
decoder (ids overlap between buses, e.g. on the RAV4 radar bus).
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import cantools.database
import numpy as np
from cantools.database.can import Database, Message, Signal

from oodida.hw.batch import BatchPlan, carries, compile_plan, exact_in_float64, select, words
from oodida.hw.errors import DbcError, UnknownSignalError
from oodida.hw.frames import ERROR_FLAG, REMOTE_FLAG, FrameBatch
from oodida.hw.mux import Chain, chain_of, layout

logger = logging.getLogger(__name__)

_STANDARD_MASK = 0x7FF
_EXTENDED_MASK = 0x1FFFFFFF

# One compiled signal: (output name, shift, mask, sign bit or 0, 2 * sign bit, scale, offset).
_Field = tuple[str, int, int, int, int, float, float]

# How the special path reads one signal: (big-endian?, shift, mask, sign, wrap, scale,
# offset) for the shift-and-mask arithmetic, or (a one-signal copy of the message,
# its name) for cantools, which decodes the signal alone, as declared.
_Getter = tuple[bool, int, int, int, int, float, float] | tuple[Message, str]


@dataclass(frozen=True, slots=True)
class _Plan:
    """How to decode one message: its fields, or cantools for the odd layouts."""

    length: int
    # Split by byte order so the loops need no per-signal test; each reads its own
    # integer view of the payload.
    big: tuple[_Field, ...]
    little: tuple[_Field, ...]
    # Set when the message is multiplexed, a container, or has a signal the
    # arithmetic cannot decode exactly (`_decode_special`); then `big` and `little`
    # are empty. One test per frame keeps the plain path as fast as it was.
    special: _Special | None = None


@dataclass(frozen=True, slots=True)
class _Special:
    """A message outside the plain fast path: its multiplexers (`hw.mux`, parents
    first) and its wanted signals, each with the multiplexers above it."""

    selectors: tuple[tuple[str, _Getter, frozenset[int], Chain | None], ...]
    fields: tuple[tuple[str, _Getter, Chain], ...]
    # A container message, which cantools decodes whole, and its (DBC name, output
    # name) pairs.
    container: Message | None = None
    container_names: tuple[tuple[str, str], ...] = ()


class SignalDecoder:
    """Decodes chosen DBC signals from raw CAN frames, never raising on a bad frame.

    Counters (`frames`, `unknown_frames`, `malformed_frames`, `error_frames`,
    `remote_frames`) rather than exceptions or log lines per frame: a noisy bus must
    cost neither the agent's life nor its disk. Error frames (`hw.frames.ERROR_FLAG`
    in the id) carry no signal whatever their id says, and remote-request frames
    (`REMOTE_FLAG`) no payload: each is counted as what it is, never decoded.
    The counters are plain ints, so one decoder serves one reader thread.
    """

    def __init__(self, dbc_path: str | os.PathLike[str], signals: Iterable[str] | None = None) -> None:
        path = os.fspath(dbc_path)
        try:
            db = cantools.database.load_file(path, strict=False)
        except FileNotFoundError as exc:
            raise DbcError(f"DBC file not found: {path}") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise DbcError(f"cannot read DBC file {path}: {exc}") from exc
        except Exception as exc:
            # cantools raises parser errors of several unrelated types.
            raise DbcError(f"cannot parse DBC file {path}: {exc}") from exc
        if not isinstance(db, Database):
            raise DbcError(f"{path} is not a CAN database (got {type(db).__name__})")
        self._init(db, signals, os.path.basename(path))

    @classmethod
    def from_database(cls, db: Database, signals: Iterable[str] | None = None) -> SignalDecoder:
        """Build from an already loaded database, so tests and tools need not write files."""
        self = cls.__new__(cls)
        self._init(db, signals, "<database>")
        return self

    def _init(self, db: Database, signals: Iterable[str] | None, label: str) -> None:
        self._db = db
        self._label = label
        self.frames = 0
        self.unknown_frames = 0
        self.malformed_frames = 0
        self.error_frames = 0
        self.remote_frames = 0
        self._warned_ids: set[int] = set()

        self._by_canonical: dict[str, tuple[Message, Signal]] = {}
        self._by_bare: dict[str, list[str]] = {}
        for message in db.messages:
            for signal in message.signals:
                canonical = f"{message.name}.{signal.name}"
                self._by_canonical[canonical] = (message, signal)
                self._by_bare.setdefault(signal.name, []).append(canonical)

        if signals is None:
            requested = list(self._by_canonical)
        else:
            if isinstance(signals, str):
                raise TypeError("signals must be an iterable of names, not a single str")
            requested = list(signals)
            if not requested:
                raise ValueError("no signals requested; pass None for every signal in the DBC")

        wanted: dict[str, list[tuple[str, Signal]]] = {}
        seen: dict[str, str] = {}
        for name in requested:
            canonical = self.resolve(name)
            if canonical in seen:
                raise ValueError(f"signal {canonical} requested twice (as {seen[canonical]!r} and {name!r})")
            seen[canonical] = name
            message, signal = self._by_canonical[canonical]
            wanted.setdefault(message.name, []).append((name, signal))

        self._signal_names = tuple(requested)
        self._plans: dict[int, _Plan] = {}
        self._batch_plans: dict[int, BatchPlan] = {}
        for message in db.messages:
            self._batch_plans[message.frame_id] = compile_plan(message, wanted.get(message.name, []))
            if message.frame_id in self._plans:
                # Frames reach us as (id, data) without the IDE bit; a DBC using one
                # number as both a standard and an extended id cannot be told apart.
                logger.warning("%s: id 0x%X is defined twice; %s wins", label, message.frame_id, message.name)
            chosen = wanted.get(message.name)
            if chosen:
                self._plans[message.frame_id] = _compile(message, chosen)
            else:
                # Kept, with its length, so that short frames are counted here too.
                self._plans[message.frame_id] = _Plan(length=message.length, big=(), little=())
        self._wanted_messages = tuple(
            sorted((m for m in db.messages if m.name in wanted), key=lambda m: m.frame_id)
        )
        self.frame_ids: frozenset[int] = frozenset(m.frame_id for m in self._wanted_messages)

    @property
    def signal_names(self) -> tuple[str, ...]:
        """The names used in `decode`'s output, as the caller asked for them, in order."""
        return self._signal_names

    def resolve(self, name: str) -> str:
        """The canonical `MESSAGE.SIGNAL` name, so two spellings of a signal are one."""
        if name in self._by_canonical:
            return name
        if "." not in name:
            candidates = self._by_bare.get(name, [])
            if len(candidates) == 1:
                return candidates[0]
            if candidates:
                raise UnknownSignalError(
                    name,
                    f"signal name {name!r} is ambiguous in {self._label}: it is in "
                    f"{len(candidates)} messages; use one of {', '.join(candidates)}",
                    candidates,
                )
        close = self._close_matches(name)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownSignalError(name, f"unknown signal {name!r} in {self._label}{hint}", close)

    def unit(self, name: str) -> str | None:
        """The DBC's unit of a signal (`km/h`), None when the DBC gives none; results
        carry it so every number an analyst sees keeps its unit."""
        try:
            _, signal = self._by_canonical[self.resolve(name)]
        except UnknownSignalError:
            return None
        return signal.unit or None

    def _close_matches(self, name: str) -> list[str]:
        # Case-insensitive: "speed" should suggest SPEED.SPEED.
        keys = {key.upper(): key for key in (*self._by_canonical, *self._by_bare)}
        found = difflib.get_close_matches(name.upper(), keys, n=5, cutoff=0.6)
        return [keys[key] for key in found]

    def describe(self, name: str) -> tuple[str, float | None, float | None]:
        """(unit, minimum, maximum) of a signal as the DBC declares them ("" and None
        where it declares none), for the agent's signal catalogue."""
        signal = self._by_canonical[self.resolve(name)][1]
        lo, hi = signal.minimum, signal.maximum
        return signal.unit or "", None if lo is None else float(lo), None if hi is None else float(hi)

    def decode(self, arbitration_id: int, data: bytes | bytearray) -> list[tuple[str, float]] | None:
        """The wanted signals of one frame, or None when the DBC does not know its id
        (or it is an error or remote frame, flagged in the id as `hw.frames` does).

        `[]` means "known, but nothing wanted here" or "too short to decode"; the
        difference shows in `malformed_frames`. The order of signals within one
        frame's list carries no meaning.
        """
        self.frames += 1
        plan = self._plans.get(arbitration_id)
        if plan is None:
            if arbitration_id > 0x1FFFFFFF:  # a flag bit (error or remote frame); a literal: per frame
                self._count_unknown(arbitration_id)
            else:
                self.unknown_frames += 1
            return None
        size = len(data)
        if size < plan.length:
            self._malformed(arbitration_id, f"{size} bytes, DBC says {plan.length}")
            return []
        if plan.special is not None:
            return self._decode_special(plan.special, plan.length, arbitration_id, data)
        big_fields = plan.big
        little_fields = plan.little
        if not big_fields and not little_fields:
            return []
        if size != plan.length:
            # As cantools does: excess bytes are ignored.
            data = data[: plan.length]
        out = []
        if big_fields:
            word = int.from_bytes(data, "big")
            for name, shift, mask, sign, wrap, scale, offset in big_fields:
                raw = (word >> shift) & mask
                if raw & sign:
                    raw -= wrap
                out.append((name, raw * scale + offset))
        if little_fields:
            word = int.from_bytes(data, "little")
            for name, shift, mask, sign, wrap, scale, offset in little_fields:
                raw = (word >> shift) & mask
                if raw & sign:
                    raw -= wrap
                out.append((name, raw * scale + offset))
        return out

    def decode_batch(self, batch: FrameBatch) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The wanted signals of many frames: {name: (timestamps, values)}, float64 arrays.

        Equal, value for value and counter for counter, to calling `decode` on every
        frame in order and gathering each signal's values: a signal comes from one
        message id, and each id's frames keep their order (time order: a batch out of
        timestamp order is sorted first, stably). Signals with no value in
        this batch are absent. Costs a sort of the ids and a few numpy operations per
        id and wanted signal, instead of Python work per frame.
        """
        n = len(batch)
        if n == 0:
            return {}
        stamps = batch.timestamps
        if n > 1 and (stamps[1:] < stamps[:-1]).any():
            # Out of order (a live clock stepped back within one read): decoded in
            # time order, stably, so every signal's samples ascend as the store needs.
            order = np.argsort(stamps, kind="stable")
            batch = FrameBatch(stamps[order], batch.ids[order], batch.data[order], batch.lengths[order])
        ids = batch.ids
        # Stable, so each id's frames stay in order; on 16-bit keys (every standard
        # id) numpy sorts by radix, several times faster than on int64.
        keys = ids.astype(np.uint16) if 0 <= ids.min() and ids.max() <= 0xFFFF else ids
        order = np.argsort(keys, kind="stable")
        sorted_ids = ids[order]
        starts = np.flatnonzero(np.concatenate(([True], sorted_ids[1:] != sorted_ids[:-1])))
        ends = np.append(starts[1:], n)
        # Gathered once in id order, so each id's frames are a slice (a view), not a
        # fancy-indexed copy per id: that per-id cost is what bounds small batches.
        little_all, big_all = words(batch.data, order)
        times_all = batch.timestamps[order]
        lengths_all = batch.lengths[order]
        shortest = np.minimum.reduceat(lengths_all, starts).tolist()
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        decoded_singly = 0
        plans = self._batch_plans
        for frame_id, start, end, least in zip(
            sorted_ids[starts].tolist(), starts.tolist(), ends.tolist(), shortest, strict=True
        ):
            plan = plans.get(frame_id)
            if plan is None:
                self._count_unknown(frame_id, end - start)
                continue
            if plan.per_frame:
                decoded_singly += end - start
                self._decode_rows(batch, order[start:end], out)
                continue
            little, big, timestamps = little_all[start:end], big_all[start:end], times_all[start:end]
            if least < plan.length:
                whole = lengths_all[start:end] >= plan.length
                self._malformed(
                    frame_id, f"frames shorter than the DBC's {plan.length} bytes", int(whole.size - whole.sum())
                )
                little, big, timestamps = little[whole], big[whole], timestamps[whole]
            if not plan.columns or not little.size:
                continue
            selected: dict[str, np.ndarray] = {}
            if plan.selectors:
                valid, selected = select(plan, little, big)
                if valid is not None:
                    self._malformed(frame_id, "multiplexer value the DBC does not define", int((~valid).sum()))
                    little, big, timestamps = little[valid], big[valid], timestamps[valid]
                    selected = {mux: values[valid] for mux, values in selected.items()}
                    if not little.size:
                        continue
            for block in plan.blocks:
                for name, values in zip(block.names, block.values(little, big), strict=True):
                    out[name] = (timestamps, values)
            for column in plan.muxed:
                chosen = carries(column.chain, selected)
                assert chosen is not None
                if chosen.any():
                    out[column.name] = (timestamps[chosen], column.values(little[chosen], big[chosen]))
        self.frames += n - decoded_singly
        return out

    def _decode_rows(
        self, batch: FrameBatch, rows: np.ndarray, out: dict[str, tuple[np.ndarray, np.ndarray]]
    ) -> None:
        """The frames of one id through `decode`, one by one, gathered into `out`."""
        gathered: dict[str, tuple[list[float], list[float]]] = {}
        data = batch.data
        lengths = batch.lengths[rows].tolist()
        frame_ids = batch.ids[rows].tolist()
        for row, timestamp, frame_id, length in zip(
            rows.tolist(), batch.timestamps[rows].tolist(), frame_ids, lengths, strict=True
        ):
            for name, value in self.decode(frame_id, data[row, :length].tobytes()) or ():
                times, values = gathered.setdefault(name, ([], []))
                times.append(timestamp)
                values.append(value)
        for name, (times, values) in gathered.items():
            out[name] = (np.array(times, dtype=np.float64), np.array(values, dtype=np.float64))

    def _decode_special(
        self, special: _Special, length: int, arbitration_id: int, data: bytes | bytearray
    ) -> list[tuple[str, float]]:
        """A multiplexed message, or one with signals for cantools: the multiplexers
        first (a value the DBC does not define makes the frame malformed, as cantools
        has it), then each wanted signal the frame carries, decoded as declared."""
        if special.container is not None:
            return self._decode_container(special, arbitration_id, data)
        data = bytes(data[:length])
        big = int.from_bytes(data, "big")
        little = int.from_bytes(data, "little")
        selected: dict[str, int] = {}
        try:
            for name, getter, keys, chain in special.selectors:
                if chain is None or not all(selected.get(mux) in ids for mux, ids in chain):
                    continue  # not in this frame
                value = int(_read(getter, data, big, little))
                if keys and value not in keys:
                    self._malformed(arbitration_id, f"multiplexer {name} = {value}, which the DBC does not define")
                    return []
                selected[name] = value
            return [
                (name, _read(getter, data, big, little))
                for name, getter, chain in special.fields
                if all(selected.get(mux) in ids for mux, ids in chain)
            ]
        except Exception as exc:
            # cantools raises several unrelated types on payloads it cannot unpack,
            # and a NaN multiplexer has no integer value; a bad frame must not kill the reader.
            self._malformed(arbitration_id, f"{type(exc).__name__}: {exc}")
            return []

    def _decode_container(
        self, special: _Special, arbitration_id: int, data: bytes | bytearray
    ) -> list[tuple[str, float]]:
        assert special.container is not None
        try:
            decoded = special.container.decode(bytes(data), decode_choices=False, scaling=True)
        except Exception as exc:
            # cantools raises several unrelated types on bad payloads (an unknown
            # multiplexer value among them); a bad frame must not kill the reader.
            self._malformed(arbitration_id, f"cantools: {exc}")
            return []
        assert isinstance(decoded, dict)
        return [
            (name, float(decoded[dbc_name]))  # type: ignore[arg-type]
            for dbc_name, name in special.container_names
            if dbc_name in decoded
        ]

    def _count_unknown(self, arbitration_id: int, count: int = 1) -> None:
        """An id without a plan: an error frame, a remote request, or one the DBC lacks."""
        if arbitration_id & ERROR_FLAG:
            self.error_frames += count
        elif arbitration_id & REMOTE_FLAG:
            self.remote_frames += count
        else:
            self.unknown_frames += count

    def _malformed(self, arbitration_id: int, reason: str, count: int = 1) -> None:
        self.malformed_frames += count
        if arbitration_id not in self._warned_ids:
            self._warned_ids.add(arbitration_id)
            logger.warning("malformed frame 0x%X (%s); further ones are only counted", arbitration_id, reason)

    def can_filters(self) -> list[dict[str, Any]]:
        """python-can filters passing only frames with wanted signals, for the kernel to apply."""
        return [
            {
                "can_id": message.frame_id,
                "can_mask": _EXTENDED_MASK if message.is_extended_frame else _STANDARD_MASK,
                "extended": bool(message.is_extended_frame),
            }
            for message in self._wanted_messages
        ]

    def __repr__(self) -> str:
        return (
            f"<SignalDecoder {self._label}: {len(self._signal_names)} signals in "
            f"{len(self.frame_ids)} messages; frames={self.frames} "
            f"unknown={self.unknown_frames} malformed={self.malformed_frames} "
            f"errors={self.error_frames} remote={self.remote_frames}>"
        )


def _compile(message: Message, chosen: list[tuple[str, Signal]]) -> _Plan:
    """Turn the wanted signals of one message into shift/mask fields, or a special plan."""
    length = message.length
    if message.is_container:
        logger.debug("container message %s decoded through cantools", message.name)
        names = tuple((signal.name, name) for name, signal in chosen)
        return _Plan(length=length, big=(), little=(), special=_Special((), (), message, names))
    _warn_overlaps(message, [signal for _, signal in chosen])
    muxes = layout(message)
    if muxes is not None and muxes.unmarked:
        logger.info(
            "DBC message %s: %s selects signals (SG_MUL_VAL_) but is not marked M; taken as their multiplexer",
            message.name,
            ", ".join(muxes.unmarked),
        )
    if muxes is not None or not all(_plain(signal, length) for _, signal in chosen):
        logger.debug("message %s decoded by the special path (multiplexed or cantools signals)", message.name)
        fields = []
        for name, signal in chosen:
            chain = chain_of(message, signal)
            if chain is not None:  # None: in no frame at all
                fields.append((name, _getter(message, signal), chain))
        selectors = () if muxes is None else tuple(
            (s.signal.name, _getter(message, s.signal), s.keys, s.chain) for s in muxes.selectors
        )
        return _Plan(length=length, big=(), little=(), special=_Special(selectors, tuple(fields)))
    big: list[_Field] = []
    little: list[_Field] = []
    for name, signal in chosen:
        is_big, shift, mask, sign, wrap, scale, offset = _arithmetic(signal, length)
        (big if is_big else little).append((name, shift, mask, sign, wrap, scale, offset))
    return _Plan(length=length, big=tuple(big), little=tuple(little))


def _plain(signal: Signal, length: int) -> bool:
    """The shift-and-mask arithmetic gives cantools' value for this signal exactly:
    an integer signal inside the message, with float64 exact for its range and
    scaling (wide signals and huge integer scalings part from cantools' ints)."""
    return not signal.is_float and _fits(signal, length) and exact_in_float64(signal, length)


def _arithmetic(signal: Signal, length: int) -> tuple[bool, int, int, int, int, float, float]:
    is_big = signal.byte_order == "big_endian"
    # Big-endian: the payload read as one big-endian integer holds the signal
    # with its LSB this many bits above the integer's LSB.
    shift = 8 * length - (_msb(signal) + signal.length) if is_big else signal.start
    mask = (1 << signal.length) - 1
    sign = 1 << (signal.length - 1) if signal.is_signed else 0
    # Same factors cantools multiplies by; floats so every output is a float.
    return is_big, shift, mask, sign, sign << 1, float(signal.conversion.scale), float(signal.conversion.offset)


def _getter(message: Message, signal: Signal) -> _Getter:
    if _plain(signal, message.length):
        return _arithmetic(signal, message.length)
    # cantools decodes this one signal alone: a message of just it, so that neither
    # overlapping neighbours nor the multiplexing (handled by the caller) get in the way.
    alone = Signal(
        name=signal.name,
        start=signal.start,
        length=signal.length,
        byte_order=signal.byte_order,
        is_signed=signal.is_signed,
        conversion=signal.conversion,
    )
    return (
        Message(
            frame_id=message.frame_id,
            name=message.name,
            length=message.length,
            signals=[alone],
            is_extended_frame=message.is_extended_frame,
            strict=False,
        ),
        signal.name,
    )


def _read(getter: _Getter, data: bytes, big: int, little: int) -> float:
    if len(getter) == 2:
        message, name = getter
        # cantools types decode() as the result of any message kind (containers too);
        # a plain message decoded without choices gives a mapping of numbers
        return float(message.decode(data, decode_choices=False, scaling=True)[name])  # type: ignore[call-overload, arg-type]
    is_big, shift, mask, sign, wrap, scale, offset = getter
    raw = ((big if is_big else little) >> shift) & mask
    if raw & sign:
        raw -= wrap
    return raw * scale + offset


def _msb(signal: Signal) -> int:
    """A Motorola signal's MSB in network order (bit 0 = MSB of byte 0).

    cantools, like the DBC, numbers a big-endian start bit in "sawtooth" order
    (7..0 in byte 0, 15..8 in byte 1, ...) and points it at the MSB.
    """
    return 8 * (signal.start // 8) + (7 - signal.start % 8)


def _fits(signal: Signal, length: int) -> bool:
    first = _msb(signal) if signal.byte_order == "big_endian" else signal.start
    return first >= 0 and first + signal.length <= 8 * length and signal.length > 0


def _bits(signal: Signal) -> set[int]:
    """The payload bits a signal covers, as (byte * 8 + bit-in-byte) numbers."""
    if signal.byte_order == "little_endian":
        return set(range(signal.start, signal.start + signal.length))
    msb = _msb(signal)
    return {8 * (p // 8) + 7 - p % 8 for p in range(msb, msb + signal.length)}


def _exclusive(message: Message, one: Signal, other: Signal) -> bool:
    """Never in one frame: a common multiplexer selects them by disjoint values."""
    first, second = chain_of(message, one), chain_of(message, other)
    if first is None or second is None:
        return True
    theirs = dict(second)
    return any(mux in theirs and not ids & theirs[mux] for mux, ids in first)


def _warn_overlaps(message: Message, chosen: list[Signal]) -> None:
    """Say so when a DBC bug makes signals share bits: cantools refuses such a message
    outright, we decode each signal as declared, and the operator should know."""
    pairs = set()
    for signal in chosen:
        mine = _bits(signal)
        for other in message.signals:
            if other is not signal and mine & _bits(other) and not _exclusive(message, signal, other):
                pairs.add(" and ".join(sorted((signal.name, other.name))))
    if pairs:
        logger.info(
            "DBC message %s: overlapping signals (%s); each is decoded as declared",
            message.name,
            "; ".join(sorted(pairs)),
        )
