"""Building NMEA sentences for tests: the checksum computed here, independently of pynmea2."""

from __future__ import annotations

from functools import reduce


def checksum(body: str) -> str:
    """XOR of every character between '$' and '*', as two upper-case hex digits (NMEA 0183)."""
    return f"{reduce(lambda acc, ch: acc ^ ord(ch), body, 0):02X}"


def sentence(body: str) -> str:
    """'$' + body + '*' + checksum, without the line ending."""
    return f"${body}*{checksum(body)}"


def line(body: str) -> bytes:
    """A sentence as a receiver sends it: ASCII, ending in CR LF."""
    return (sentence(body) + "\r\n").encode("ascii")
