"""Building NMEA sentences for tests: the checksum computed here, independently of pynmea2."""

from __future__ import annotations

import datetime as dt
from functools import reduce
from pathlib import Path

RECORDING = Path(__file__).with_name("data") / "gothenburg.nmea"  # a drive through Gothenburg
GGA = "GPGGA,073003.00,5742.53220,N,01158.47360,E,1,09,0.80,13.2,M,36.2,M,,"
RMC = "GPRMC,073004.00,A,5742.53273,N,01158.47260,E,2.700,314.67,120626,,,A"


def checksum(body: str) -> str:
    """XOR of every character between '$' and '*', as two upper-case hex digits (NMEA 0183)."""
    return f"{reduce(lambda acc, ch: acc ^ ord(ch), body, 0):02X}"


def sentence(body: str) -> str:
    """'$' + body + '*' + checksum, without the line ending."""
    return f"${body}*{checksum(body)}"


def line(body: str) -> bytes:
    """A sentence as a receiver sends it: ASCII, ending in CR LF."""
    return (sentence(body) + "\r\n").encode("ascii")


def reference(text: str) -> list[tuple[str, float]]:
    """The recording's values computed by splitting fields by hand, not by pynmea2."""
    out = []
    for raw in text.splitlines():
        fields = raw.split("*")[0].split(",")
        if fields[0] == "$GPGGA":
            out.append(("GPS.FIX_QUALITY", float(fields[6])))
            if fields[6] != "0":
                lat = int(fields[2][:2]) + float(fields[2][2:]) / 60
                lon = int(fields[4][:3]) + float(fields[4][3:]) / 60
                out += [("GPS.LATITUDE", lat), ("GPS.LONGITUDE", lon), ("GPS.SATELLITES", float(fields[7])),
                        ("GPS.HDOP", float(fields[8])), ("GPS.ALTITUDE", float(fields[9]))]
        elif fields[0] == "$GPRMC" and fields[2] == "A":
            when = dt.datetime.strptime(fields[9] + fields[1], "%d%m%y%H%M%S.%f").replace(tzinfo=dt.UTC)
            out += [("GPS.SPEED", float(fields[7]) * 1.852), ("GPS.COURSE", float(fields[8])),
                    ("GPS.UTC", when.timestamp())]
    return out
