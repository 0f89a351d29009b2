"""Writes gothenburg.nmea: 90 s of a drive through central Gothenburg, as a u-blox
style receiver at 1 Hz would send it (TXT at power-up, then GGA, RMC, GSA, GSV every
second, the first three seconds without a fix).

Synthetic, not recorded: the route follows real streets roughly (Centralstationen,
over Götaälvbron to Hisingen, west on Lundbyleden), the speeds are a plausible urban
drive, and every checksum is computed. Re-run to regenerate:
`python -m tests.hw.data.make_gothenburg_nmea`.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

from tests.hw.nmea_text import sentence

ROUTE = [  # (latitude, longitude), degrees
    (57.70887, 11.97456),  # Centralstationen
    (57.71170, 11.96920),  # Götaälvbron, south end
    (57.71640, 11.96480),  # Götaälvbron, north end
    (57.72050, 11.95700),  # Hjalmar Brantingsplatsen
    (57.71920, 11.94000),  # Lundbyleden
    (57.71600, 11.92000),  # Lundbyleden, west
]
START = (7 * 3600 + 30 * 60)  # 07:30:00 UTC
DATE = "120626"  # 12 June 2026
R = 6_371_000.0  # mean Earth radius, m


def speed_kmh(second: int) -> float:
    """Pull away, 50 km/h through town, slow for the turn at ~40 s, 70 km/h on Lundbyleden."""
    if second < 3:
        return 0.0
    if second < 13:
        return 5.0 * (second - 3)
    if second < 38:
        return 50.0
    if second < 45:
        return 50.0 - 4.0 * (second - 38)
    return min(22.0 + 3.0 * (second - 45), 70.0)


def _distance(a: tuple[float, float], b: tuple[float, float]) -> float:
    (la1, lo1), (la2, lo2) = (map(math.radians, a)), (map(math.radians, b))
    x = (lo2 - lo1) * math.cos((la1 + la2) / 2)
    return R * math.hypot(x, la2 - la1)


def _bearing(a: tuple[float, float], b: tuple[float, float]) -> float:
    la1, lo1, la2, lo2 = map(math.radians, (*a, *b))
    y = math.sin(lo2 - lo1) * math.cos(la2)
    x = math.cos(la1) * math.sin(la2) - math.sin(la1) * math.cos(la2) * math.cos(lo2 - lo1)
    return math.degrees(math.atan2(y, x)) % 360


def _along(travelled: float) -> tuple[float, float, float]:
    """Position and course after `travelled` metres along the route."""
    for a, b in itertools.pairwise(ROUTE):
        leg = _distance(a, b)
        if travelled <= leg:
            f = travelled / leg
            return a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1]), _bearing(a, b)
        travelled -= leg
    return ROUTE[-1][0], ROUTE[-1][1], _bearing(ROUTE[-2], ROUTE[-1])


def _nmea_angle(value: float, width: int) -> str:
    degrees = int(value)
    return f"{degrees:0{width}d}{(value - degrees) * 60:08.5f}"


def lines() -> list[str]:
    out = [sentence("GPTXT,01,01,02,u-blox ag - www.u-blox.com"), sentence("GPTXT,01,01,02,HW UBX-M8030 00080000")]
    travelled = 0.0
    for second in range(90):
        hhmmss = START + second
        t = f"{hhmmss // 3600:02d}{hhmmss // 60 % 60:02d}{hhmmss % 60:02d}.00"
        kmh = speed_kmh(second)
        travelled += kmh / 3.6
        lat, lon, course = _along(travelled)
        if second < 3:  # cold start: no fix yet
            out += [
                sentence(f"GPGGA,{t},,,,,0,00,99.99,,,,,,"),
                sentence(f"GPRMC,{t},V,,,,,,,{DATE},,,N"),
                sentence("GPGSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99"),
                sentence("GPGSV,1,1,02,05,,,28,13,,,31"),
            ]
            continue
        sats = 9 + (second // 20) % 3
        hdop = 0.8 + 0.1 * ((second // 7) % 4)
        alt = 12.0 + 6.0 * math.sin(second / 15)
        out += [
            sentence(f"GPGGA,{t},{_nmea_angle(lat, 2)},N,{_nmea_angle(lon, 3)},E,1,{sats:02d},{hdop:.2f},"
                     f"{alt:.1f},M,36.2,M,,"),
            sentence(f"GPRMC,{t},A,{_nmea_angle(lat, 2)},N,{_nmea_angle(lon, 3)},E,{kmh / 1.852:.3f},"
                     f"{course if kmh else 0:.2f},{DATE},,,A"),
            sentence("GPGSA,A,3,05,13,15,18,20,23,24,29,30,,,," + f"{hdop + 0.6:.2f},{hdop:.2f},1.10"),
            sentence("GPGSV,3,1,10,05,41,252,38,13,68,176,41,15,28,109,35,18,12,318,30"),
        ]
    return out


if __name__ == "__main__":
    path = Path(__file__).with_name("gothenburg.nmea")
    path.write_bytes("".join(f"{s}\r\n" for s in lines()).encode("ascii"))
    print(f"wrote {path}")
