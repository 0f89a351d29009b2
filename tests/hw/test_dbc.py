"""SignalDecoder against cantools, the reference it must equal value for value."""

from __future__ import annotations

import functools
import logging
import math
from pathlib import Path

import cantools
import pytest
from cantools.database.can import Database, Message
from hypothesis import given, settings
from hypothesis import strategies as st

from oodida.core.errors import OodidaError
from oodida.hw.dbc import SignalDecoder
from oodida.hw.errors import DbcError, HwError, UnknownSignalError
from tests.hw.dbc_styles import SYNTHETIC_DBC
from tests.hw.paths import DBC

SPEED_ID = 0xB4
STEER_ANGLE_SENSOR_ID = 0x25
UNKNOWN_TO_DBC = 0x2C1 + 0x100  # 0x3C1: on the bus, not in the DBC


def _same(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-9)


def _check_against_cantools(decoder: SignalDecoder, message: Message, data: bytes) -> int:
    """Assert every wanted signal of this frame equals cantools; return how many were checked."""
    out = decoder.decode(message.frame_id, data)
    assert out is not None
    reference = message.decode(data, decode_choices=False, scaling=True)
    assert isinstance(reference, dict)
    got = dict(out)
    assert len(got) == len(out), "a signal came out twice"
    for name, value in got.items():
        dbc_name = decoder.resolve(name).split(".", 1)[1]
        assert _same(value, float(reference[dbc_name])), (
            message.name,
            name,
            data.hex(),
            value,
            reference[dbc_name],
        )
    return len(got)


# --- exactness -------------------------------------------------------------------


def test_every_signal_equals_cantools_on_every_can0_frame(
    dbc_path: Path, db: Database, can0_frames: list[tuple[int, bytes]]
) -> None:
    decoder = SignalDecoder(dbc_path)
    known = {message.frame_id for message in db.messages}
    checked = 0
    for frame_id, data in can0_frames:
        if frame_id not in known:
            assert decoder.decode(frame_id, data) is None
            continue
        reference = db.decode_message(frame_id, data, decode_choices=False, scaling=True)
        assert isinstance(reference, dict)
        out = decoder.decode(frame_id, data)
        assert out is not None
        message = db.get_message_by_frame_id(frame_id)
        assert sorted(name for name, _ in out) == sorted(f"{message.name}.{s}" for s in reference)
        for name, value in out:
            expected = reference[name.split(".", 1)[1]]
            assert isinstance(value, float)
            assert _same(value, float(expected)), (name, data.hex(), value, expected)  # type: ignore[arg-type]
            checked += 1
    assert checked > 200_000  # every signal of the 39k known frames, not a vacuous pass
    assert decoder.malformed_frames == 0
    assert decoder.frames == len(can0_frames)


def test_selected_signals_come_out_under_the_names_asked_for(
    dbc_path: Path, db: Database, can0_frames: list[tuple[int, bytes]]
) -> None:
    decoder = SignalDecoder(dbc_path, ["SPEED", "STEER_ANGLE_SENSOR.STEER_ANGLE", "STEER_RATE"])
    assert decoder.signal_names == ("SPEED", "STEER_ANGLE_SENSOR.STEER_ANGLE", "STEER_RATE")
    assert decoder.frame_ids == {SPEED_ID, STEER_ANGLE_SENSOR_ID}
    names_seen = set()
    for frame_id, data in can0_frames:
        out = decoder.decode(frame_id, data)
        if frame_id in decoder.frame_ids:
            names_seen.update(name for name, _ in out or [])
            _check_against_cantools(decoder, db.get_message_by_frame_id(frame_id), data)
        elif out is not None:
            assert out == []
    assert names_seen == set(decoder.signal_names)


@functools.cache
def _rav4() -> tuple[Database, SignalDecoder]:
    # Not fixtures: hypothesis would render these huge objects in every report.
    db = cantools.database.load_file(DBC, strict=False)
    assert isinstance(db, Database)
    return db, SignalDecoder(DBC)


# PCS_HUD declares overlapping signals (FRD_ADJ inside PCS_SENSITIVITY): cantools
# cannot decode it at all ("unpacking failed"); see the test of its own below.
CANTOOLS_CANNOT_DECODE = {"PCS_HUD"}


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(sorted({m.name for m in _rav4()[0].messages} - CANTOOLS_CANNOT_DECODE)),
    data=st.data(),
)
def test_random_payloads_of_every_dbc_message_equal_cantools(name: str, data: st.DataObject) -> None:
    # Most of the DBC's 58 messages never occur in the log; random payloads cover them,
    # with every sign bit and every edge value hypothesis likes to try.
    db, decoder = _rav4()
    message = db.get_message_by_name(name)
    payload = data.draw(st.binary(min_size=message.length, max_size=message.length))
    assert _check_against_cantools(decoder, message, payload) == len(message.signals)


def test_overlapping_signals_are_decoded_as_declared(
    dbc_path: Path, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    message = db.get_message_by_name("PCS_HUD")
    payload = bytes([0, 0, 0, 0, 0, 0, 0b1010_1100, 0])
    with pytest.raises(cantools.database.DecodeError):
        message.decode(payload, decode_choices=False)
    with caplog.at_level(logging.INFO, logger="oodida.hw.dbc"):  # a fact of the DBC, said once at start
        decoder = SignalDecoder(dbc_path, ["PCS_HUD.PCS_SENSITIVITY", "PCS_HUD.FRD_ADJ"])
    assert "FRD_ADJ and PCS_SENSITIVITY" in caplog.text
    # Motorola 55|8 is all of byte 6; 53|3 is its bits 5..3.
    assert dict(decoder.decode(0x411, payload) or []) == {
        "PCS_HUD.PCS_SENSITIVITY": 0b1010_1100,
        "PCS_HUD.FRD_ADJ": 0b101,
    }


@functools.cache
def _synthetic() -> Database:
    db = cantools.database.load_string(SYNTHETIC_DBC, database_format="dbc", strict=False)
    assert isinstance(db, Database)
    return db


@pytest.fixture(scope="module")
def synthetic_db() -> Database:
    return _synthetic()


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(["EXTENDED", "FD64", "FLOATY", "MIXED", "MUXED"]), data=st.data())
def test_random_payloads_of_unusual_layouts_equal_cantools(name: str, data: st.DataObject) -> None:
    synthetic_db = _synthetic()
    decoder = SignalDecoder.from_database(synthetic_db)
    message = synthetic_db.get_message_by_name(name)
    payload = data.draw(st.binary(min_size=message.length, max_size=message.length))
    try:
        message.decode(payload, decode_choices=False, scaling=True)
    except cantools.database.DecodeError:
        # A multiplexer value the DBC does not define: counted, not raised.
        assert decoder.decode(message.frame_id, payload) == []
        assert decoder.malformed_frames == 1
        return
    _check_against_cantools(decoder, message, payload)
    assert decoder.malformed_frames == 0


def test_multiplexed_message_yields_only_the_selected_branch(synthetic_db: Database) -> None:
    decoder = SignalDecoder.from_database(synthetic_db, ["MUXED.A", "MUXED.B"])
    assert decoder.decode(256, bytes([0, 0x10, 0x00, 0, 0, 0, 0, 0])) == [("MUXED.A", 18.0)]
    branch_1 = decoder.decode(256, bytes([1, 0, 0, 0, 0, 0, 0, 0]))
    assert branch_1 is not None and [name for name, _ in branch_1] == ["MUXED.B"]


def test_extended_frames_get_an_extended_filter(synthetic_db: Database) -> None:
    decoder = SignalDecoder.from_database(synthetic_db, ["WIDE", "LE_SIGNED"])
    assert decoder.can_filters() == [
        {"can_id": 258, "can_mask": 0x7FF, "extended": False},
        {"can_id": 0x400, "can_mask": 0x1FFFFFFF, "extended": True},
    ]
    assert decoder.decode(0x400, b"\xff" * 8) == [("WIDE", -1.0)]


# --- counters: nothing on the bus may raise -----------------------------------------


def test_unknown_ids_are_counted_and_give_none(
    dbc_path: Path, can0_frames: list[tuple[int, bytes]], db: Database
) -> None:
    decoder = SignalDecoder(dbc_path, ["SPEED"])
    known = {message.frame_id for message in db.messages}
    expected_unknown = sum(1 for frame_id, _ in can0_frames if frame_id not in known)
    results = [decoder.decode(frame_id, data) for frame_id, data in can0_frames]
    assert decoder.unknown_frames == expected_unknown == results.count(None)
    assert expected_unknown > 10_000  # 58 of the 90 can0 ids are not in the DBC
    assert decoder.frames == len(can0_frames)
    assert decoder.decode(UNKNOWN_TO_DBC, b"\x00" * 8) is None


def test_known_id_without_wanted_signals_gives_empty_list(dbc_path: Path) -> None:
    decoder = SignalDecoder(dbc_path, ["SPEED"])
    assert decoder.decode(STEER_ANGLE_SENSOR_ID, b"\x00" * 8) == []
    assert decoder.unknown_frames == 0 and decoder.malformed_frames == 0
    # Short is short, wanted or not: the counter tells of the bus, not of the request.
    assert decoder.decode(STEER_ANGLE_SENSOR_ID, b"\x00" * 3) == []
    assert decoder.malformed_frames == 1


@pytest.mark.parametrize("payload", [b"", b"\x00", b"\x00" * 7, bytearray(5)])
def test_short_frames_are_counted_not_fatal(dbc_path: Path, payload: bytes) -> None:
    decoder = SignalDecoder(dbc_path, ["SPEED", "STEER_ANGLE_SENSOR.STEER_ANGLE"])
    assert decoder.decode(SPEED_ID, payload) == []
    assert decoder.decode(STEER_ANGLE_SENSOR_ID, payload) == []
    assert decoder.malformed_frames == 2
    # And the decoder goes on decoding good frames.
    assert decoder.decode(SPEED_ID, bytes.fromhex("000000001D0B7A5E")) == [("SPEED", 0x0B7A * 0.01)]
    assert decoder.malformed_frames == 2


def test_short_frame_of_a_fallback_message_is_counted(synthetic_db: Database) -> None:
    decoder = SignalDecoder.from_database(synthetic_db, ["F"])
    assert decoder.decode(257, b"\x00\x00") == []
    assert decoder.malformed_frames == 1


def test_excess_bytes_are_ignored_as_cantools_does(dbc_path: Path, db: Database) -> None:
    decoder = SignalDecoder(dbc_path)
    payload = bytes.fromhex("0011223344")  # EPS_STATUS is 5 bytes long
    padded = payload + b"\xff\xff\xff"
    assert decoder.decode(0x262, padded) == decoder.decode(0x262, payload)
    _check_against_cantools(decoder, db.get_message_by_frame_id(0x262), padded)
    assert decoder.malformed_frames == 0


# --- names -----------------------------------------------------------------------


def test_resolve_accepts_canonical_and_unique_bare_names(dbc_path: Path) -> None:
    decoder = SignalDecoder(dbc_path, ["SPEED"])
    assert decoder.resolve("SPEED") == "SPEED.SPEED"
    assert decoder.resolve("SPEED.SPEED") == "SPEED.SPEED"
    assert decoder.resolve("STEER_RATE") == "STEER_ANGLE_SENSOR.STEER_RATE"


def test_ambiguous_bare_name_names_the_candidates(dbc_path: Path) -> None:
    with pytest.raises(UnknownSignalError) as caught:
        SignalDecoder(dbc_path, ["CHECKSUM"])
    error = caught.value
    assert "ambiguous" in str(error) and "SPEED.CHECKSUM" in str(error)
    assert "SPEED.CHECKSUM" in error.candidates and len(error.candidates) > 5
    assert error.name == "CHECKSUM"


def test_steer_angle_is_ambiguous_in_this_dbc(dbc_path: Path) -> None:
    # Both the angle sensor (1.5 deg/bit) and the torque sensor (0.0573 deg/bit)
    # carry a STEER_ANGLE; guessing one would give an analyst the wrong signal.
    with pytest.raises(UnknownSignalError) as caught:
        SignalDecoder(dbc_path, ["STEER_ANGLE"])
    assert set(caught.value.candidates) == {
        "STEER_ANGLE_SENSOR.STEER_ANGLE",
        "STEER_TORQUE_SENSOR.STEER_ANGLE",
    }


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("SPED", "SPEED"),
        ("speed", "SPEED"),
        ("SPEED.SPED", "SPEED.SPEED"),
        ("STEER_ANGLE_SENSOR.STEER_ANGEL", "STEER_ANGLE_SENSOR.STEER_ANGLE"),
    ],
)
def test_unknown_name_suggests_close_matches(dbc_path: Path, name: str, suggestion: str) -> None:
    with pytest.raises(UnknownSignalError) as caught:
        SignalDecoder(dbc_path, [name])
    error = caught.value
    assert suggestion in error.candidates
    assert str(error).startswith(f"unknown signal {name!r}")  # not KeyError's quoted repr
    assert suggestion in str(error)
    assert isinstance(error, KeyError) and isinstance(error, HwError) and isinstance(error, OodidaError)


def test_unknown_name_without_any_close_match(dbc_path: Path) -> None:
    with pytest.raises(UnknownSignalError, match="unknown signal 'XYZZY'") as caught:
        SignalDecoder(dbc_path, ["XYZZY"])
    assert caught.value.candidates == ()


def test_a_signal_asked_for_twice_is_refused(dbc_path: Path) -> None:
    with pytest.raises(ValueError, match="requested twice"):
        SignalDecoder(dbc_path, ["SPEED", "SPEED.SPEED"])


def test_bad_selections_are_refused(dbc_path: Path) -> None:
    with pytest.raises(ValueError, match="no signals"):
        SignalDecoder(dbc_path, [])
    with pytest.raises(TypeError):
        SignalDecoder(dbc_path, "SPEED")


def test_none_means_every_signal_by_canonical_name(dbc_path: Path, db: Database) -> None:
    decoder = SignalDecoder(dbc_path)
    assert len(decoder.signal_names) == sum(len(m.signals) for m in db.messages)
    assert "PCM_CRUISE.ACCEL_NET" in decoder.signal_names
    assert decoder.frame_ids == {m.frame_id for m in db.messages}


def test_can_filters_are_python_can_filters_for_the_wanted_ids(dbc_path: Path) -> None:
    decoder = SignalDecoder(dbc_path, ["SPEED", "STEER_ANGLE_SENSOR.STEER_ANGLE", "STEER_RATE"])
    assert decoder.can_filters() == [
        {"can_id": STEER_ANGLE_SENSOR_ID, "can_mask": 0x7FF, "extended": False},
        {"can_id": SPEED_ID, "can_mask": 0x7FF, "extended": False},
    ]


def test_missing_dbc_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.dbc"
    with pytest.raises(DbcError, match=r"nope\.dbc"):
        SignalDecoder(missing)


def test_garbage_dbc_is_a_clear_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.dbc"
    garbage.write_text("BO_ this is not a dbc {{{\n")
    with pytest.raises(DbcError, match=r"garbage\.dbc"):
        SignalDecoder(garbage)
