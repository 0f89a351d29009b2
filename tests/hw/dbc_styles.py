"""Small DBCs in the styles real files use and break, written from a seed.

Each DBC has a handful of messages, each in one style:

- plain: byte-aligned signals, little and big endian, signed, scaled (int and float
  factors, huge integer factors past 2**53), IEEE floats (SIG_VALTYPE_);
- overlap: the same with signals sharing bits (a DBC bug cantools refuses);
- wide: a signal of 53 to 64 bits (beyond float64's exact integers), with or without
  an overlapping neighbour;
- mux: one multiplexer (`M` / `mN`), some of its values named only in its value
  table (VAL_ with no signal under them);
- tied: children declared `mN` but tied to their multiplexer by SG_MUL_VAL_ with
  ranges, the multiplexer marked `M` or only `m` (vw_pq.dbc's Motor_2 pattern);
- extended: a multiplexer under a multiplexer (`m1M`), tied by SG_MUL_VAL_;
- muxoverlap: a multiplexed message whose branch has overlapping signals
  (vw_pq.dbc's Gate_Komf_1 pattern).

Multiplexers sit in byte 0; other signals in bytes 1..7 (all 8 for wide ones).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

STYLES = ("plain", "overlap", "wide", "mux", "tied", "extended", "muxoverlap")
SCALINGS = ("1,0", "1,0", "0.5,-10", "0.1,0", "2,5", "0.01,100.5", "-1,0", "3,-7", "1000000,3")


@dataclass
class _Message:
    frame_id: int
    name: str
    length: int
    style: str
    lines: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)  # VAL_, SG_MUL_VAL_, SIG_VALTYPE_ lines


def _start(rng: random.Random, first_byte: int, nbytes: int, length: int, big: bool) -> int:
    """A DBC start bit for a signal of `length` bits inside bytes [first_byte, first_byte + nbytes)."""
    room = 8 * nbytes - length
    r = rng.randint(0, room)
    if not big:
        return 8 * first_byte + r
    msb = 8 * first_byte + r  # network order: bit 0 is the MSB of byte 0
    return 8 * (msb // 8) + 7 - msb % 8


def _signal(rng: random.Random, message: _Message, name: str, mux: str, first: int, nbytes: int,
            *, length: int | None = None, allow_float: bool = True) -> None:
    big = rng.random() < 0.4
    if allow_float and length is None and nbytes >= 4 and rng.random() < 0.15:
        length = 32 if nbytes < 8 or rng.random() < 0.5 else 64
        message.extra.append(f"SIG_VALTYPE_ {message.frame_id} {name} : {1 if length == 32 else 2};")
        scaling, signed = "1,0", "-"
    else:
        if length is None:
            length = rng.randint(1, 8 * nbytes)
        scaling = rng.choice(SCALINGS)
        signed = "-" if rng.random() < 0.35 else "+"
    start = _start(rng, first, nbytes, length, big)
    order = 0 if big else 1
    marker = f" {mux}" if mux else ""
    message.lines.append(f' SG_ {name}{marker} : {start}|{length}@{order}{signed} ({scaling}) [0|0] "" N')


def _regions(rng: random.Random, first: int, last: int) -> list[tuple[int, int]]:
    """Bytes [first, last) cut into consecutive regions of 1 to 4 bytes: (start, size)."""
    regions, at = [], first
    while at < last:
        size = min(rng.randint(1, 4), last - at)
        regions.append((at, size))
        at += size
    return regions


def _plain(rng, m: _Message, prefix: str, mux: str = "", first: int = 1, overlap: bool = False,
           last: int | None = None) -> None:
    regions = _regions(rng, first, m.length if last is None else last)
    for k, (start, size) in enumerate(regions):
        _signal(rng, m, f"{prefix}{k}", mux, start, size)
    if overlap and regions:
        start, size = rng.choice(regions)
        _signal(rng, m, f"{prefix}X", mux, start, size, allow_float=False)  # shares that region's bits


def _mux_byte(rng, m: _Message, name: str, marker: str, length: int, low: int) -> None:
    """A multiplexer of `length` bits at bit `low` of byte 0 (little endian, unscaled)."""
    m.lines.append(f' SG_ {name} {marker} : {low}|{length}@1+ (1,0) [0|0] "" N')


def make_dbc(seed: int) -> str:
    rng = random.Random(seed)
    messages = []
    for k in range(rng.randint(4, 6)):
        style = STYLES[(seed + k) % len(STYLES)] if k < 2 else rng.choice(STYLES)
        extended = rng.random() < 0.2
        frame_id = rng.randint(0x40, 0x7FF) if not extended else rng.randint(0x800, 0x1FFFFFFF)
        while any(x.frame_id == frame_id for x in messages):
            frame_id += 1
        length = 8 if style in ("wide", "mux", "tied", "extended", "muxoverlap") else rng.randint(2, 8)
        m = _Message(frame_id, f"M{k}_{style}", length, style)
        if style == "plain":
            _plain(rng, m, "S", first=0)
        elif style == "overlap":
            _plain(rng, m, "S", first=0, overlap=True)
        elif style == "wide":
            _signal(rng, m, "W", "", 0, 8, length=rng.randint(53, 64), allow_float=False)
            if rng.random() < 0.7:
                _signal(rng, m, "V", "", rng.randint(0, 7), 1, allow_float=False)  # inside W
        elif style == "mux":
            _mux_byte(rng, m, "SEL", "M", 3, 0)
            used = sorted(rng.sample(range(8), 3))
            for value in used:
                _plain(rng, m, f"B{value}_", f"m{value}", last=5)
            _plain(rng, m, "R", first=5)  # in every frame
            named = sorted(set(rng.sample(range(8), 3)) | set(used[:1]))
            m.extra.append(f"VAL_ {frame_id} SEL " + " ".join(f'{v} "v{v}"' for v in named) + " ;")
        elif style == "tied":
            # marked `m`, as in vw_pq.dbc's Motor_2, or `M`: SG_MUL_VAL_ ties the children either way
            _mux_byte(rng, m, "CODE", rng.choice(("m", "M")), 2, 6)
            ranges = {"A": (1, 1), "B": (2, 3)}
            for child, (lo, hi) in ranges.items():
                _signal(rng, m, child, f"m{lo}", 1, 2, allow_float=False)
                m.extra.append(f"SG_MUL_VAL_ {frame_id} {child} CODE {lo}-{hi};")
            _plain(rng, m, "R", first=3)
        elif style == "extended":
            _mux_byte(rng, m, "TOP", "M", 2, 0)
            _mux_byte(rng, m, "SUB", "m1M", 3, 4)
            m.extra.append(f"SG_MUL_VAL_ {frame_id} SUB TOP 1-1;")
            for value in (0, 2):
                _signal(rng, m, f"T{value}", f"m{value}", 1, 2, allow_float=False)
                m.extra.append(f"SG_MUL_VAL_ {frame_id} T{value} TOP {value}-{value};")
            for lo, hi in ((0, 1), (3, 5)):
                _signal(rng, m, f"U{lo}", f"m{lo}", 3, 2, allow_float=False)
                m.extra.append(f"SG_MUL_VAL_ {frame_id} U{lo} SUB {lo}-{hi};")
            _plain(rng, m, "R", first=5)
        else:  # muxoverlap
            _mux_byte(rng, m, "GATE", "M", 2, 0)
            _plain(rng, m, "G0_", "m0", overlap=True)
            _plain(rng, m, "G1_", "m1")
        messages.append(m)
    out = ['VERSION ""', "", "NS_ :", "", "BS_:", "", "BU_: N", ""]
    for m in messages:
        dbc_id = m.frame_id | 0x80000000 if m.frame_id > 0x7FF else m.frame_id
        out.append(f"BO_ {dbc_id} {m.name}: {m.length} N")
        out.extend(m.lines)
        out.append("")
    for m in messages:
        for line in m.extra:
            out.append(line.replace(f" {m.frame_id} ",
                                    f" {m.frame_id | 0x80000000 if m.frame_id > 0x7FF else m.frame_id} ", 1))
    return "\n".join(out) + "\n"


# Layouts the RAV4 DBC lacks: multiplexing, float signals, 1-bit signed, little- and
# big-endian signals at odd positions in one message, a 64-byte FD frame, an
# extended id.
SYNTHETIC_DBC = """\
VERSION ""

NS_ :

BS_:

BU_: ECU

BO_ 256 MUXED: 8 ECU
 SG_ MUX M : 0|8@1+ (1,0) [0|0] "" ECU
 SG_ A m0 : 8|16@1- (0.5,10) [0|0] "" ECU
 SG_ B m1 : 15|12@0+ (2,0) [0|0] "" ECU
 SG_ C m1 : 39|8@0- (1,0) [0|0] "" ECU

BO_ 257 FLOATY: 8 ECU
 SG_ F : 0|32@1- (1,0) [0|0] "" ECU
 SG_ G : 39|8@0+ (1,0) [0|0] "" ECU

BO_ 258 MIXED: 8 ECU
 SG_ LE_SIGNED : 3|13@1- (0.25,-3) [0|0] "" ECU
 SG_ BE_SIGNED : 23|11@0- (0.1,0) [0|0] "" ECU
 SG_ ONE_BIT : 16|1@1- (1,0) [0|0] "" ECU
 SG_ BE_ODD : 33|7@0+ (3,-1.5) [0|0] "" ECU
 SG_ LE_TAIL : 44|20@1+ (0.001,0) [0|0] "" ECU

BO_ 259 FD64: 64 ECU
 SG_ HI_LE : 500|12@1- (1,0) [0|0] "" ECU
 SG_ HI_BE : 487|16@0+ (0.01,0) [0|0] "" ECU
 SG_ LO_BE : 7|64@0+ (1,0) [0|0] "" ECU

BO_ 2147484672 EXTENDED: 8 ECU
 SG_ WIDE : 0|64@1- (1,0) [0|0] "" ECU

SIG_VALTYPE_ 257 F : 1;
"""
