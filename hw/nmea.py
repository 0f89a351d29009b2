"""NMEA 0183 sentences from a GPS receiver, turned into named signal values.

Sans-IO, like `wire/`: `NmeaDecoder.feed(bytes)` takes whatever a serial read
returned (half a sentence, three sentences, line noise) and returns the values of
the sentences it completed. No port, thread or clock here, so every odd byte stream
is tested by feeding bytes, and the serial reader stays a thin loop.

Only what a receiver says about the vehicle becomes a signal: position and fix from
GGA, speed, course and the receiver's UTC from RMC. Every other valid sentence (GSV,
GSA, VTG, TXT, proprietary ones) is counted as unknown and skipped, as CAN frames the
DBC does not describe are. A sentence with a bad or missing checksum, one pynmea2
cannot parse, or one whose fields are out of range is counted as malformed and
dropped: a position from a corrupted line is worse than no position.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable

import pynmea2

# NMEA 0183 caps a sentence at 82 characters; receivers that break the rule (long
# proprietary sentences) still stay well under this. A longer run without a newline is
# line noise (a wrong baud rate, a binary protocol): it is dropped, so the buffer stays
# bounded and the next newline resynchronises the reader.
MAX_LINE = 256

KNOTS_TO_KMH = 1.852  # exact: one knot is one nautical mile (1852 m) per hour

# The signals a GPS source records, after its prefix: name -> what it holds.
SIGNALS: dict[str, str] = {
    "LATITUDE": "degrees, north positive (WGS 84), from GGA with a fix",
    "LONGITUDE": "degrees, east positive (WGS 84), from GGA with a fix",
    "SPEED": "km/h over ground, from RMC (the receiver's knots x 1.852)",
    "COURSE": "degrees true over ground, from RMC when the receiver gives one",
    "FIX_QUALITY": "GGA fix quality: 0 none, 1 GPS, 2 DGPS, 4 RTK fixed, 5 RTK float, 6 estimated",
    "SATELLITES": "satellites used in the fix, from GGA",
    "HDOP": "horizontal dilution of precision, from GGA",
    "ALTITUDE": "metres above mean sea level, from GGA",
    "UTC": "the receiver's UTC time (s since the epoch), from RMC: a check on the host clock",
}


def signal_names(prefix: str = "GPS") -> list[str]:
    """The names under which a GPS source with this prefix records its signals."""
    return [f"{prefix}.{name}" for name in SIGNALS]


class NmeaDecoder:
    """Bytes from a receiver in, `[(signal, value), ...]` per completed sentence out.

    The counters are named as the CAN decoder's are (`unknown_frames`,
    `malformed_frames`), so the agent's status sums them with the CAN buses' without
    knowing which kind of source it looks at.
    """

    def __init__(self, prefix: str = "GPS") -> None:
        self.prefix = prefix
        self.signal_names = signal_names(prefix)
        self._names = {name: f"{prefix}.{name}" for name in SIGNALS}
        self._pending = bytearray()
        self._discarding = False  # inside an over-long run: drop up to the next newline
        self.sentences = 0  # valid GGA/RMC sentences used
        self.unknown_frames = 0  # valid sentences of other types, skipped
        self.malformed_frames = 0  # bad checksum, unparseable, out of range, line noise

    def reset(self) -> None:
        """Forget a partial line: called when the port is reopened, since the rest of
        a line cut by a vanished device never comes."""
        if self._pending:
            self.malformed_frames += 1
        self._pending.clear()
        self._discarding = False

    def feed(self, data: bytes) -> list[list[tuple[str, float]]]:
        """The values of every sentence that `data` completes, in order; each inner
        list is one sentence (possibly empty, e.g. GGA without a fix gives only its
        fix quality)."""
        out: list[list[tuple[str, float]]] = []
        for line in self._lines(data):
            values = self.decode_line(line)
            if values:
                out.append(values)
        return out

    def _lines(self, data: bytes) -> Iterable[bytes]:
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            if self._discarding:
                self._discarding = False
            else:
                self._pending += data[start:end]
                if len(self._pending) <= MAX_LINE:
                    yield bytes(self._pending)
                else:
                    self.malformed_frames += 1
            self._pending.clear()
            start = end + 1
        if not self._discarding:
            self._pending += data[start:]
            if len(self._pending) > MAX_LINE:
                self.malformed_frames += 1
                self._pending.clear()
                self._discarding = True

    def decode_line(self, line: bytes) -> list[tuple[str, float]]:
        """One line without its newline: the values it carries, [] if none."""
        line = line.strip()
        if not line:
            return []
        dollar = line.rfind(b"$")
        if dollar < 0:
            self.malformed_frames += 1
            return []
        if dollar > 0:
            # Noise before a sentence (a receiver reset mid-line, a glitch): the noise
            # is counted, the sentence after it still read. A sentence never holds a
            # '$', so the last one starts the sentence.
            self.malformed_frames += 1
            line = line[dollar:]
        try:
            text = line.decode("ascii")
            sentence = pynmea2.parse(text, check=True)
        except Exception:  # ChecksumError, ParseError, and odd errors pynmea2 raises on junk
            self.malformed_frames += 1
            return []
        kind = getattr(sentence, "sentence_type", None)
        try:
            if kind == "GGA":
                values = self._gga(sentence)
            elif kind == "RMC":
                values = self._rmc(sentence)
            else:
                self.unknown_frames += 1
                return []
        except ValueError:
            self.malformed_frames += 1
            return []
        self.sentences += 1
        return values

    def _gga(self, s: pynmea2.NMEASentence) -> list[tuple[str, float]]:
        quality = _number(s.data[5])
        if quality is None or quality not in (0, 1, 2, 3, 4, 5, 6, 7, 8):
            raise ValueError("fix quality")
        n = self._names
        values = [(n["FIX_QUALITY"], quality)]
        if quality > 0:
            values += [
                (n["LATITUDE"], _degrees(s.data[1], s.data[2], "NS", 90)),
                (n["LONGITUDE"], _degrees(s.data[3], s.data[4], "EW", 180)),
            ]
            for name, raw in (("SATELLITES", s.data[6]), ("HDOP", s.data[7]), ("ALTITUDE", s.data[8])):
                value = _number(raw)
                if value is not None:
                    values.append((n[name], value))
        return values

    def _rmc(self, s: pynmea2.NMEASentence) -> list[tuple[str, float]]:
        status = s.data[1]
        if status == "V":  # void: the receiver has no fix, so speed and course mean nothing
            return []
        if status != "A":
            raise ValueError("status")
        n = self._names
        values = []
        speed = _number(s.data[6])
        if speed is not None:
            if speed < 0:
                raise ValueError("speed")
            values.append((n["SPEED"], speed * KNOTS_TO_KMH))
        course = _number(s.data[7])
        if course is not None:
            values.append((n["COURSE"], course))
        utc = _utc(s.data[0], s.data[8])
        if utc is not None:
            values.append((n["UTC"], utc))
        return values


def _number(raw: str) -> float | None:
    """An empty field is 'not given' (None); anything else must be a finite number."""
    if raw == "":
        return None
    value = float(raw)  # ValueError: the caller counts the sentence as malformed
    if not math.isfinite(value):
        raise ValueError(raw)
    return value


def _degrees(raw: str, hemisphere: str, allowed: str, limit: float) -> float:
    """NMEA's (d)ddmm.mmmm and a hemisphere letter -> signed decimal degrees."""
    if hemisphere not in allowed or not raw:
        raise ValueError(hemisphere)
    value = float(raw)
    if not math.isfinite(value) or value < 0:
        raise ValueError(raw)
    degrees = int(value // 100)
    minutes = value - degrees * 100
    if minutes >= 60:
        raise ValueError(raw)
    decimal = degrees + minutes / 60
    if decimal > limit:
        raise ValueError(raw)
    return -decimal if hemisphere == allowed[1] else decimal


def _utc(time_field: str, date_field: str) -> float | None:
    """RMC's hhmmss.ss and ddmmyy -> seconds since the epoch; None if either is blank.
    Two-digit years are 2000-2099: receivers' own firmware makes the same choice."""
    if not time_field or not date_field:
        return None
    if len(date_field) != 6 or len(time_field) < 6:
        raise ValueError(date_field)
    day, month, year = int(date_field[0:2]), int(date_field[2:4]), 2000 + int(date_field[4:6])
    hours, minutes, seconds = int(time_field[0:2]), int(time_field[2:4]), float(time_field[4:])
    if hours > 23 or minutes > 59 or not 0 <= seconds < 61:  # 60.x: a leap second
        raise ValueError(time_field)
    midnight = dt.datetime(year, month, day, tzinfo=dt.UTC)  # ValueError on 31 Feb
    return midnight.timestamp() + hours * 3600 + minutes * 60 + seconds
