"""Vectorised decoding of one message id's frames: the DBC layout as numpy shifts and masks.

A batch of frames is grouped by id (in `SignalDecoder.decode_batch`); for each group
the payloads are read as one uint64 per frame, little-endian and, where a signal is
Motorola, big-endian, and each wanted signal is a shift, a mask, a sign extension and
`raw * scale + offset` in float64 over the whole group.

Exactness against cantools is the rule, so a message takes this path only when every
step is exact in float64: payloads of at most 8 bytes, integer (not float) signals of
at most 52 bits, integer scalings whose results stay below 2**53, and unscaled
multiplexers (nested through SG_MUL_VAL_ too; which signal is in which frame is
`hw.mux`'s rule, shared with the per-frame path). Anything else is marked
`per_frame` and goes through the per-frame decoder (which hands its own odd signals
to cantools).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from cantools.database.can import Message, Signal

from oodida.hw.mux import Chain, chain_of, layout

_WORD_BITS = 64
_EXACT = 1 << 53  # float64 holds every integer up to this exactly


@dataclass(frozen=True, slots=True)
class Column:
    """One signal: where its bits sit in the 8-byte word, and its scaling."""

    name: str
    big: bool  # read from the big-endian view of the payload
    shift: np.uint64
    mask: np.uint64
    sign: int  # the sign bit's value, 0 for unsigned
    scale: float
    offset: float
    chain: tuple[tuple[str, np.ndarray], ...] = ()  # multiplexers above it and their selecting values

    def raw(self, little: np.ndarray, big: np.ndarray) -> np.ndarray:
        """The signal's integer values, sign-extended, as int64."""
        word = big if self.big else little
        raw = ((word >> self.shift) & self.mask).astype(np.int64)
        if self.sign:
            raw ^= self.sign
            raw -= self.sign
        return raw

    def values(self, little: np.ndarray, big: np.ndarray) -> np.ndarray:
        """Physical values, computed as cantools does: `raw * scale + offset` in float64."""
        values = self.raw(little, big).astype(np.float64)
        if self.scale == 1.0 and self.offset == 0.0:
            return values  # integers: no -0.0 for the addition to turn into +0.0
        values *= self.scale
        values += self.offset
        return values


@dataclass(frozen=True, slots=True)
class Block:
    """The always-present signals of one byte order in one message, decoded together:
    one (signals, frames) array per step instead of a numpy call per signal and step,
    which is what matters for batches of a few thousand frames."""

    names: tuple[str, ...]
    big: bool
    shifts: np.ndarray  # uint64, (k, 1)
    masks: np.ndarray  # uint64, (k, 1)
    signs: np.ndarray  # int64, (k, 1); 0 for unsigned, which the sign step leaves alone
    scales: np.ndarray  # float64, (k, 1)
    offsets: np.ndarray  # float64, (k, 1)
    signed: bool  # some signal is signed
    unscaled: bool  # every scale is 1 and every offset 0

    @classmethod
    def of(cls, columns: list[Column]) -> Block:
        def stack(values: Sequence[int | float | np.generic], dtype: type) -> np.ndarray:
            return np.array(values, dtype=dtype).reshape(-1, 1)

        return cls(
            names=tuple(c.name for c in columns),
            big=columns[0].big,
            shifts=stack([c.shift for c in columns], np.uint64),
            masks=stack([c.mask for c in columns], np.uint64),
            signs=stack([c.sign for c in columns], np.int64),
            scales=stack([c.scale for c in columns], np.float64),
            offsets=stack([c.offset for c in columns], np.float64),
            signed=any(c.sign for c in columns),
            unscaled=all(c.scale == 1.0 and c.offset == 0.0 for c in columns),
        )

    def values(self, little: np.ndarray, big: np.ndarray) -> np.ndarray:
        """(signals, frames) float64: row i is signal `names[i]`, contiguous.

        `raw * scale + offset` in float64, as cantools computes it. Skipping the sign
        step where no signal is signed, and the scaling where every signal is
        unscaled, changes no bit: integers times 1.0 plus 0.0 are themselves (there is
        no -0.0 among them; a negative scale can make one, and then the offset, which
        cantools always adds, int 0 or float, makes it +0.0 here too).
        """
        word = big if self.big else little
        # Every field is at most 52 bits wide, so the uint64 bits read as int64 are
        # the same non-negative numbers: a view, not a conversion.
        raw: np.ndarray = ((word[np.newaxis, :] >> self.shifts) & self.masks).view(np.int64)
        if self.signed:
            raw ^= self.signs
            raw -= self.signs
        if self.unscaled:
            return raw.astype(np.float64)
        values: np.ndarray = raw * self.scales  # int64 to float64 as astype does, then the product
        values += self.offsets
        return values


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """How to decode one message's frames in a batch."""

    length: int
    columns: tuple[Column, ...]  # the wanted signals; empty when none is wanted
    per_frame: bool = False  # the layout is outside this path: decode frame by frame
    # The multiplexers, unscaled, parents first: (column, values the DBC defines, or
    # an empty array for "any"); each column's `chain` says where it hangs.
    selectors: tuple[tuple[Column, np.ndarray], ...] = ()
    blocks: tuple[Block, ...] = ()  # the wanted signals present in every frame, by byte order
    muxed: tuple[Column, ...] = ()  # the wanted signals present for some multiplexer values


def compile_plan(message: Message, chosen: list[tuple[str, Signal]]) -> BatchPlan:
    """The batch plan for one message and its wanted (output name, signal) pairs."""
    length = message.length
    if not chosen:
        return BatchPlan(length=length, columns=())
    if message.is_container or length > 8:
        return BatchPlan(length=length, columns=(), per_frame=True)
    if not all(exact_in_float64(signal, length) for _, signal in chosen):
        return BatchPlan(length=length, columns=(), per_frame=True)
    muxes = layout(message)
    selectors: list[tuple[Column, np.ndarray]] = []
    if muxes is not None:
        for selector in muxes.selectors:
            signal = selector.signal
            if (
                not exact_in_float64(signal, length)
                or signal.conversion.scale != 1
                or signal.conversion.offset != 0
            ):
                return BatchPlan(length=length, columns=(), per_frame=True)
            if selector.chain is None:
                continue  # in no frame: never checked, selects nothing
            selectors.append((
                _column(signal.name, signal, selector.chain),
                np.array(sorted(selector.keys), dtype=np.int64),
            ))
    columns = []
    for name, signal in chosen:
        chain = chain_of(message, signal)
        if chain is not None:  # None: in no frame
            columns.append(_column(name, signal, chain))
    always = [column for column in columns if not column.chain]
    blocks = tuple(
        Block.of(group)
        for group in ([c for c in always if not c.big], [c for c in always if c.big])
        if group
    )
    muxed = tuple(column for column in columns if column.chain)
    return BatchPlan(
        length=length, columns=tuple(columns), selectors=tuple(selectors), blocks=blocks, muxed=muxed
    )


def select(
    plan: BatchPlan, little: np.ndarray, big: np.ndarray
) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
    """Which frames are valid (None: all), and each multiplexer's values: a frame is
    invalid when a multiplexer it carries has a value the DBC does not define."""
    values: dict[str, np.ndarray] = {}
    valid = None
    for column, keys in plan.selectors:
        raw = column.raw(little, big)
        values[column.name] = raw
        if keys.size:
            bad = ~np.isin(raw, keys)
            carried = carries(column.chain, values)
            if carried is not None:
                bad &= carried
            if bad.any():
                valid = ~bad if valid is None else valid & ~bad
    return valid, values


def carries(chain: tuple[tuple[str, np.ndarray], ...], values: dict[str, np.ndarray]) -> np.ndarray | None:
    """The frames whose multiplexers select along `chain` (None: every frame)."""
    mask = None
    for mux, ids in chain:
        here = np.isin(values[mux], ids)
        mask = here if mask is None else mask & here
    return mask


def words(data: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first 8 payload bytes of `rows` as uint64, read little-endian and big-endian."""
    block = np.ascontiguousarray(data[rows, :8])
    little = block.view("<u8").reshape(-1)
    return little, little.byteswap()


def _column(name: str, signal: Signal, chain: Chain = ()) -> Column:
    if signal.byte_order == "big_endian":
        # The 8-byte word read big-endian holds the signal with its LSB this many bits
        # above the word's LSB, whatever the message's length (shorter payloads are
        # zero-padded at the end, below every signal that fits the message).
        shift = _WORD_BITS - (_msb(signal) + signal.length)
    else:
        shift = signal.start
    return Column(
        name=name,
        big=signal.byte_order == "big_endian",
        shift=np.uint64(shift),
        mask=np.uint64((1 << signal.length) - 1),
        sign=1 << (signal.length - 1) if signal.is_signed else 0,
        scale=float(signal.conversion.scale),
        offset=float(signal.conversion.offset),
        chain=tuple((mux, np.array(sorted(ids), dtype=np.int64)) for mux, ids in chain),
    )


def _msb(signal: Signal) -> int:
    """A Motorola signal's MSB in network order (bit 0 = MSB of byte 0)."""
    return 8 * (signal.start // 8) + (7 - signal.start % 8)


def exact_in_float64(signal: Signal, length: int) -> bool:
    """True when float64 arithmetic on this signal gives cantools' value bit for bit.

    cantools scales Python ints: with an integer scale and offset the result is an
    exact int turned into a float at the end, so the products and sums must stay
    below 2**53 for float64 to agree; with a float scale, Python converts the raw int
    to float first, as numpy does, exact below 2**53.
    """
    if signal.is_float or not 0 < signal.length <= 52:
        return False
    first = _msb(signal) if signal.byte_order == "big_endian" else signal.start
    if first < 0 or first + signal.length > 8 * length:
        return False
    scale, offset = signal.conversion.scale, signal.conversion.offset
    if not all(isinstance(x, (int, float)) for x in (scale, offset)):
        return False
    top = 1 << signal.length
    if isinstance(scale, int) and top * abs(scale) >= _EXACT:
        return False
    if isinstance(offset, int) and abs(offset) >= _EXACT:
        return False
    both_int = isinstance(scale, int) and isinstance(offset, int)
    return not (both_int and top * abs(scale) + abs(offset) >= _EXACT)


__all__ = ["BatchPlan", "Block", "Column", "carries", "compile_plan", "exact_in_float64", "select", "words"]
