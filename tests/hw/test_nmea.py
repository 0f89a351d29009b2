"""NMEA decoding, sans-IO: a recorded-style drive fed whole, byte by byte and in odd
chunks, and every way a serial line goes wrong (bad checksums, noise, cut lines)."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from oodida.hw.nmea import KNOTS_TO_KMH, MAX_LINE, NmeaDecoder, signal_names
from tests.hw.nmea_text import GGA, RECORDING, RMC, checksum, line, reference, sentence


def flat(decoded: list[list[tuple[str, float]]]) -> list[tuple[str, float]]:
    return [pair for values in decoded for pair in values]


def test_recording_checksums_are_valid() -> None:
    for raw in RECORDING.read_text().splitlines():
        body, cs = raw[1:].split("*")
        assert checksum(body) == cs, raw


def test_one_gga_gives_signed_decimal_degrees_and_the_fix() -> None:
    decoder = NmeaDecoder()
    assert decoder.feed(line(GGA)) == [[
        ("GPS.FIX_QUALITY", 1.0), ("GPS.LATITUDE", pytest.approx(57.70887, abs=1e-9)),
        ("GPS.LONGITUDE", pytest.approx(11.97456, abs=1e-9)), ("GPS.SATELLITES", 9.0),
        ("GPS.HDOP", 0.8), ("GPS.ALTITUDE", 13.2),
    ]]
    south_west = GGA.replace(",N,", ",S,").replace(",E,", ",W,")
    values = dict(flat(decoder.feed(line(south_west))))
    assert values["GPS.LATITUDE"] == pytest.approx(-57.70887, abs=1e-9)
    assert values["GPS.LONGITUDE"] == pytest.approx(-11.97456, abs=1e-9)
    assert (decoder.sentences, decoder.malformed_frames, decoder.unknown_frames) == (2, 0, 0)


def test_one_rmc_gives_km_per_hour_course_and_the_receivers_utc() -> None:
    values = dict(flat(NmeaDecoder().feed(line(RMC))))
    assert values["GPS.SPEED"] == pytest.approx(2.7 * 1.852) == pytest.approx(5.0004)
    assert values["GPS.COURSE"] == 314.67
    assert values["GPS.UTC"] == dt.datetime(2026, 6, 12, 7, 30, 4, tzinfo=dt.UTC).timestamp()
    assert KNOTS_TO_KMH == 1.852


def test_the_whole_recording_decodes_to_the_reference() -> None:
    data = RECORDING.read_bytes()
    decoder = NmeaDecoder()
    got = flat(decoder.feed(data))
    want = reference(data.decode())
    assert [n for n, _ in got] == [n for n, _ in want]
    assert [v for _, v in got] == pytest.approx([v for _, v in want], abs=1e-9)
    # 90 GGA and 90 RMC; TXT, GSA and GSV are valid but not used
    assert (decoder.sentences, decoder.unknown_frames, decoder.malformed_frames) == (180, 182, 0)
    assert {n for n, _ in got} == set(signal_names())


@pytest.mark.parametrize("split", ["bytes", "random"])
def test_chunking_does_not_matter(split: str) -> None:
    data = RECORDING.read_bytes()
    whole = NmeaDecoder().feed(data)
    decoder = NmeaDecoder()
    got = []
    if split == "bytes":
        for i in range(len(data)):
            got += decoder.feed(data[i : i + 1])
    else:
        rng = random.Random(5)
        i = 0
        while i < len(data):
            n = rng.randint(1, 200)
            got += decoder.feed(data[i : i + n])
            i += n
    assert got == whole


def test_no_fix_gives_only_the_fix_quality_and_void_rmc_nothing() -> None:
    decoder = NmeaDecoder()
    got = decoder.feed(line("GPGGA,073000.00,,,,,0,00,99.99,,,,,,") + line("GPRMC,073000.00,V,,,,,,,120626,,,N"))
    assert got == [[("GPS.FIX_QUALITY", 0.0)]]
    assert decoder.malformed_frames == 0


def test_bad_checksum_is_counted_and_dropped() -> None:
    decoder = NmeaDecoder()
    good = sentence(GGA)
    wrong = good[:-2] + ("00" if good[-2:] != "00" else "01")
    flipped = good.replace("5742.53220", "5742.53221")  # a bit flipped in transit, old checksum
    missing = "$" + GGA
    got = decoder.feed(f"{wrong}\r\n{flipped}\r\n{missing}\r\n".encode() + line(RMC))
    assert [n for n, _ in flat(got)] == ["GPS.SPEED", "GPS.COURSE", "GPS.UTC"]
    assert (decoder.sentences, decoder.malformed_frames) == (1, 3)


def test_binary_garbage_does_not_desynchronise_the_reader() -> None:
    rng = random.Random(7)
    noise = bytes(rng.randrange(256) for _ in range(3000)).replace(b"$", b"#")
    decoder = NmeaDecoder()
    got = decoder.feed(noise + b"\n" + line(GGA) + b"\xff\xfe\x00garbage" + line(RMC) + b"\x00\x01" + b"\n" + line(GGA))
    names = [n for n, _ in flat(got)]
    assert names.count("GPS.LATITUDE") == 2
    assert names.count("GPS.SPEED") == 1  # noise before a '$' on the same line: the sentence still counts
    assert decoder.sentences == 3
    assert decoder.malformed_frames >= 3


def test_an_over_long_line_is_dropped_and_the_buffer_stays_bounded() -> None:
    decoder = NmeaDecoder()
    for _ in range(100):
        assert decoder.feed(b"A" * 1000) == []
        assert len(decoder._pending) <= MAX_LINE
    got = decoder.feed(b"tail of the noise\r\n" + line(GGA))
    assert len(got) == 1 and decoder.sentences == 1
    assert decoder.malformed_frames == 1  # one run of noise, however long


def test_a_line_cut_by_a_reopen_is_forgotten() -> None:
    decoder = NmeaDecoder()
    text = line(GGA)
    assert decoder.feed(text[:30]) == []
    decoder.reset()
    assert decoder.malformed_frames == 1
    assert len(decoder.feed(text)) == 1  # not glued to the stale half


@pytest.mark.parametrize(
    "body",
    [
        GGA.replace(",N,", ",X,"),  # no such hemisphere
        GGA.replace("5742.53220", "9142.53220"),  # 91 degrees north
        GGA.replace("5742.53220", "5772.53220"),  # 72 minutes
        GGA.replace(",1,09,", ",9,09,"),  # no such fix quality
        GGA.replace(",0.80,", ",nan,"),
        RMC.replace(",2.700,", ",-2.700,"),
        RMC.replace(",120626,", ",310226,"),  # 31 February
        RMC.replace(",A,", ",Q,"),
    ],
)
def test_valid_checksum_but_impossible_fields_is_malformed(body: str) -> None:
    decoder = NmeaDecoder()
    assert decoder.feed(line(body)) == []
    assert (decoder.sentences, decoder.malformed_frames) == (0, 1)


def test_other_talkers_and_a_prefix() -> None:
    decoder = NmeaDecoder(prefix="GNSS2")
    got = flat(decoder.feed(line(GGA.replace("GPGGA", "GNGGA"))))
    assert got[0] == ("GNSS2.FIX_QUALITY", 1.0)
    assert decoder.signal_names == signal_names("GNSS2")
