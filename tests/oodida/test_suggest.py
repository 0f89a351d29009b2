"""Close matches for names analysts mistype: signals, commands, flags."""

from __future__ import annotations

import cantools

from oodida.core.suggest import close_matches, did_you_mean
from tests.helpers import DBC

DBC_NAMES = [
    f"{m.name}.{s.name}" for m in cantools.database.load_file(str(DBC), strict=False).messages for s in m.signals
]


def test_a_name_with_an_extra_word_is_offered_the_signal_it_names() -> None:
    # difflib alone offers nothing here: VEHICLE_SPEED vs SPEED scores 0.56
    assert close_matches("VEHICLE_SPEED", DBC_NAMES)[0] == "SPEED.SPEED"


def test_a_typo_and_a_lower_case_name_find_the_dbc_signal() -> None:
    assert close_matches("WHEEL_SPED_FL", DBC_NAMES)[0] == "WHEEL_SPEEDS.WHEEL_SPEED_FL"
    assert close_matches("speed", DBC_NAMES)[0] == "SPEED.SPEED"
    assert "STEER_ANGLE_SENSOR.STEER_ANGLE" in close_matches("STEER_ANGEL", DBC_NAMES)[:2]


def test_nothing_alike_offers_nothing() -> None:
    assert close_matches("XYZZY", DBC_NAMES) == []
    assert did_you_mean("XYZZY", DBC_NAMES) == ""


def test_commands_and_flags() -> None:
    commands = ["submit", "status", "results", "signals", "server", "cancel"]
    assert close_matches("sumbit", commands)[0] == "submit"
    assert close_matches("stats", commands)[0] == "status"
    assert did_you_mean("--wiat", ["--wait", "--window"]) == "; did you mean --wait?"
