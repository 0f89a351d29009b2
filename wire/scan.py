"""Count the CBOR items of a payload before decoding it: one rule, every header (tags
included) is an item, for the network (`items_over`) and the sandbox's pipe (`scan`).

cbor2 turns every item into a Python object: one byte of CBOR (an empty array, `0x80`)
becomes a 56-byte list, so a 16 MiB frame of them costs over 1 GiB of memory and
8 s of the event loop before any check of ours runs (measured: 1.2 GiB, 8.3 s). The
size checks after decoding come too late for that. This scan walks the item headers
only, skipping the contents of strings, and stops as soon as the budget is spent: a
hostile frame is refused after at most `budget` steps (1.2 million steps take about
0.3 s), with nothing allocated. A frame cannot hold more items than bytes, so frames
shorter than the budget need no scan at all.
"""

from __future__ import annotations

# bytes that follow the initial byte for additional information 24..27
_ARG_BYTES = {24: 1, 25: 2, 26: 4, 27: 8}


def items_over(data: bytes, budget: int) -> bool:
    """True when `data` holds more than `budget` CBOR items (headers, at any depth).

    Malformed or truncated CBOR is not judged here: the scan stops at the end of the
    data and leaves the reason to the decoder."""
    if len(data) <= budget:
        return False
    n = len(data)
    i = 0
    items = 0
    while i < n:
        initial = data[i]
        i += 1
        items += 1
        if items > budget:
            return True
        info = initial & 0x1F
        if info < 24:
            arg = info
        elif info < 28:
            width = _ARG_BYTES[info]
            arg = int.from_bytes(data[i : i + width], "big")
            i += width
        else:  # indefinite length or break: no argument
            continue
        major = initial >> 5
        if major == 2 or major == 3:  # byte and text strings: skip the contents
            i += arg
    return False


def _strict_tables() -> tuple[list[int], list[int]]:
    """Per initial byte: what the strict scan does (0 an item without content, 1 a
    string, 2 a tag, 3 refuse) and how long its header is."""
    action, size = [3] * 256, [0] * 256
    for initial in range(256):
        major, info = initial >> 5, initial & 0x1F
        if info >= 28:
            continue  # indefinite lengths and reserved encodings
        size[initial] = 1 + (0 if info < 24 else 1 << (info - 24))
        if major in (2, 3):
            action[initial] = 1
        elif major == 6:
            action[initial] = 2
        elif major == 7:
            action[initial] = 0 if info in (20, 21, 22, 25, 26, 27) else 3  # false true null, floats
        else:
            action[initial] = 0
    return action, size


_ACTION, _SIZE = _strict_tables()


class ScanError(ValueError):
    """CBOR that the strict scan refuses; the message says why."""


def scan(data: bytes, budget: int, allowed_tags: frozenset[int]) -> int:
    """The number of CBOR items in `data`, counted as `items_over` counts them (every
    header, tags included), checking its shape without building anything: no
    indefinite lengths, no reserved encodings, no simple values but false, true and
    null, no tag outside `allowed_tags`, only whole items. ScanError past `budget` items
    (stopping there: a hostile payload costs at most `budget` steps) or on anything
    refused."""
    action, size = _ACTION, _SIZE
    n = len(data)
    pos = 0
    items = 0
    while pos < n:
        initial = data[pos]
        act = action[initial]
        items += 1
        if items > budget:
            raise ScanError(f"more than {budget} items in one message")
        if act == 0:
            pos += size[initial]
            continue
        if act == 3:
            raise ScanError("indefinite lengths, reserved encodings and simple values are not allowed")
        header = size[initial]
        arg = initial & 0x1F if header == 1 else int.from_bytes(data[pos + 1:pos + header], "big")
        pos += header
        if act == 2:
            if arg not in allowed_tags:
                raise ScanError(f"CBOR tag {arg} is not allowed")
            continue
        pos += arg
    if pos != n:
        raise ScanError("truncated CBOR")
    return items
