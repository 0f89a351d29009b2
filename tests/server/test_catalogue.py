"""The server's catalogue: kept per vehicle, the submit check, and what an empty one does."""

from __future__ import annotations

import pytest

from oodida.server.catalogue import Catalogue
from oodida.wire.messages import SignalCatalogue, SignalInfo, SignalsRequest

SPEED = SignalInfo(name="SPEED.SPEED", unit="km/h", minimum=0.0, maximum=250.0, rate=50.0, samples=100)
STEER = SignalInfo(name="STEER_ANGLE_SENSOR.STEER_ANGLE", unit="deg", rate=80.0, samples=160)


def test_an_empty_catalogue_refuses_nothing() -> None:
    # no vehicle reported yet (just connected, or an older agent): the vehicles decide
    assert Catalogue().refusal(["ANYTHING"], ["car-1"]) is None


def test_vehicles_without_a_catalogue_are_not_held_against_a_submit() -> None:
    c = Catalogue()
    c.update("car-1", SignalCatalogue(signals=[SPEED]))
    assert c.refusal(["STEER_ANGLE"], ["car-2"]) is None  # car-2 never reported


def test_unknown_names_are_refused_with_close_matches_from_the_whole_fleet() -> None:
    c = Catalogue()
    c.update("car-1", SignalCatalogue(signals=[SPEED]))
    c.update("car-2", SignalCatalogue(signals=[STEER]))
    reason = c.refusal(["SPEED", "VEHICLE_SPEED", "STEER_ANGEL"], ["car-1"])
    assert reason is not None
    lines = reason.splitlines()
    assert len(lines) == 2
    assert "'VEHICLE_SPEED'" in lines[0] and "SPEED.SPEED" in lines[0]
    assert "'STEER_ANGEL'" in lines[1] and "STEER_ANGLE_SENSOR.STEER_ANGLE" in lines[1]  # from car-2


def test_a_name_served_by_one_selected_vehicle_is_accepted() -> None:
    c = Catalogue()
    c.update("car-1", SignalCatalogue(signals=[SPEED]))
    c.update("car-2", SignalCatalogue(signals=[STEER]))
    assert c.refusal(["STEER_ANGLE", "SPEED.SPEED"], ["car-1", "car-2"]) is None


def test_the_reply_keeps_a_vehicle_that_left_as_not_connected() -> None:
    c = Catalogue()
    c.update("car-1", SignalCatalogue(signals=[SPEED]))
    c.update("car-2", SignalCatalogue(signals=[STEER]))
    reply = c.reply(SignalsRequest(id=3), connected={"car-2"})
    assert [(v.vehicle, v.connected) for v in reply.vehicles] == [("car-1", False), ("car-2", True)]
    assert reply.vehicles[0].signals == [SPEED]
    with pytest.raises(LookupError, match="car-3"):
        c.reply(SignalsRequest(id=4, vehicle="car-3"), connected={"car-3"})
