"""The agent's catalogue: built from the DBC and the store, sent when worth it."""

from __future__ import annotations

import math

import numpy as np

from oodida.agent.catalogue import CatalogueReporter, build_catalogue, changed
from oodida.agent.store import SignalStore
from oodida.hw.dbc import SignalDecoder
from oodida.wire.codec import decode_payload, encode_payload
from oodida.wire.messages import SignalCatalogue
from tests.helpers import DBC


class _Decoder:
    """A DBC that declares a backwards range and a NaN bound."""

    def resolve(self, name: str) -> str:
        return name

    def describe(self, name: str):
        return {"A.X": ("m", 5.0, 1.0), "A.Y": ("s" * 100, math.nan, 3.0)}[name]


def test_the_catalogue_names_units_ranges_and_measured_rates() -> None:
    decoder = SignalDecoder(DBC, ["SPEED", "STEER_ANGLE_SENSOR.STEER_ANGLE"])
    store = SignalStore()
    store.declare(list(decoder.signal_names))
    t = np.arange(11) * 0.02  # 50 Hz
    store.add_batch({"SPEED": (t, t)})
    catalogue = build_catalogue(store.rates(), [decoder])
    speed, steer = catalogue.signals
    assert speed.name == "SPEED.SPEED"  # the config's bare name, reported as analysts see it in the DBC
    assert (speed.unit, speed.minimum, speed.maximum, speed.samples) == ("km/h", 0.0, 250.0, 11)
    assert speed.rate == 50.0
    assert steer.rate is None and steer.samples == 0
    assert decode_payload(encode_payload(catalogue)) == catalogue  # what it sends validates on arrival


def test_a_dbc_with_a_backwards_or_nan_range_reports_no_range_rather_than_a_refused_message() -> None:
    catalogue = build_catalogue({"A.X": (0, None), "A.Y": (0, None)}, [_Decoder()])
    x, y = catalogue.signals
    assert (x.minimum, x.maximum) == (None, None)
    assert (y.minimum, y.maximum, len(y.unit)) == (None, 3.0, 32)
    assert decode_payload(encode_payload(catalogue)) == catalogue


def test_it_is_sent_at_once_on_a_big_change_and_at_most_every_refresh_otherwise() -> None:
    now = [0.0]
    rates = {"A.X": (100, 50.0)}
    reporter = CatalogueReporter(lambda: dict(rates), [_Decoder()], refresh=10.0, clock=lambda: now[0])
    assert reporter(True) is not None  # a new connection
    assert reporter(False) is None  # nothing changed
    rates["A.X"] = (101, 50.2)
    now[0] = 5.0
    assert reporter(False) is None  # a small change, within refresh
    now[0] = 11.0
    assert reporter(False).signals[0].samples == 101  # the small change, after refresh
    rates["A.X"] = (200, 50.2)
    assert reporter(False) is not None  # samples doubled: at once
    assert reporter(True) is not None  # a reconnect always sends


def test_changed_sees_signals_that_come_and_rates_that_appear() -> None:
    a = build_catalogue({"A.X": (0, None)}, [_Decoder()])
    b = build_catalogue({"A.X": (2, 10.0)}, [_Decoder()])
    c = build_catalogue({"A.X": (2, 10.0), "A.Y": (0, None)}, [_Decoder()])
    assert changed(None, a) and changed(a, b) and changed(b, c) and not changed(c, c)
    assert isinstance(c, SignalCatalogue)
