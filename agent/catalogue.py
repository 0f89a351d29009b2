"""The agent's signal catalogue: every signal it records, with the DBC's unit and
range and the rate this vehicle measures, for the server to check submits against
and for analysts to browse (`oodida signals`).

Sent after the first status, then at once when it changed much (a signal came or
went, a rate or a sample count moved by more than `TOLERANCE`), and otherwise, if
anything changed at all, at most once per `refresh` seconds: a few hundred signals
are tens of kilobytes, too much for every status.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from oodida.wire.messages import MAX_CATALOGUE, SignalCatalogue, SignalInfo

TOLERANCE = 0.1  # relative change of a rate or a sample count that is worth a new catalogue at once
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.]{0,127}\Z")  # wire.messages.SignalName
_BOUND = 1e300


class Describes(Protocol):
    """What the catalogue needs of a decoder (hw.dbc.SignalDecoder has it)."""

    def resolve(self, name: str) -> str: ...
    def describe(self, name: str) -> tuple[str, float | None, float | None]: ...


def _bound(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) and abs(x) <= _BOUND else None


def _static(name: str, decoders: Iterable[Describes]) -> tuple[str, str, float | None, float | None]:
    """(name as analysts see it, unit, minimum, maximum): what the DBC says, once."""
    unit, lo, hi = "", None, None
    for decoder in decoders:
        try:
            name = decoder.resolve(name)  # analysts see MESSAGE.SIGNAL, whatever the config said
            unit, lo, hi = decoder.describe(name)
            break
        except (LookupError, ValueError):  # UnknownSignalError is a LookupError; not this DBC's
            continue
    lo, hi = _bound(lo), _bound(hi)
    if lo is not None and hi is not None and lo > hi:  # a DBC bug: say no range rather than a wrong one
        lo = hi = None
    return name, unit[:32], lo, hi


def build_catalogue(
    rates: dict[str, tuple[int, float | None]],
    decoders: Iterable[Describes],
    described: dict[str, tuple[str, str, float | None, float | None]] | None = None,
) -> SignalCatalogue:
    """From the store's `rates()` and the decoders that define the signals (`described`:
    a cache of what they say, kept by the caller across calls). Names the wire cannot
    carry are left out (they cannot be asked for either)."""
    decoders = list(decoders)
    described = {} if described is None else described
    infos: dict[str, SignalInfo] = {}
    for name in sorted(rates):
        samples, rate = rates[name]
        static = described.get(name)
        if static is None:
            static = described[name] = _static(name, decoders)
        shown, unit, lo, hi = static
        if not _NAME.match(shown) or shown in infos:
            continue
        rate = rate if rate is not None and math.isfinite(rate) and 0 <= rate <= 1e7 else None
        infos[shown] = SignalInfo(name=shown, unit=unit, minimum=lo, maximum=hi, rate=rate, samples=samples)
        if len(infos) >= MAX_CATALOGUE:
            break
    return SignalCatalogue(signals=list(infos.values()))


def _moved(was: float, now: float) -> bool:
    return abs(now - was) > TOLERANCE * max(abs(was), 1e-9)


Rates = dict[str, tuple[int, float | None]]  # SignalStore.rates(): name -> (samples, rate)


def rates_changed(old: Rates, new: Rates) -> bool:
    """Other signals, a rate that appeared or went, or a rate or sample count that
    moved by more than TOLERANCE: worth a catalogue at once."""
    if old.keys() != new.keys():
        return True
    for name, (samples, rate) in new.items():
        was_samples, was_rate = old[name]
        if (was_rate is None) != (rate is None):
            return True
        if was_rate is not None and rate is not None and _moved(was_rate, rate):
            return True
        if _moved(was_samples, samples):
            return True
    return False


def changed(old: SignalCatalogue | None, new: SignalCatalogue) -> bool:
    """`rates_changed` for two catalogues (None: nothing sent yet)."""
    if old is None:
        return True
    return rates_changed({s.name: (s.samples, s.rate) for s in old.signals},
                         {s.name: (s.samples, s.rate) for s in new.signals})


class CatalogueReporter:
    """Builds the catalogue on demand and says when it is worth sending again."""

    def __init__(
        self,
        rates: Callable[[], dict[str, tuple[int, float | None]]],
        decoders: Sequence[Describes],
        *,
        refresh: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rates = rates
        self._decoders = decoders
        self.refresh = refresh
        self._clock = clock
        self.sent: SignalCatalogue | None = None
        self._sent_at = 0.0
        self._described: dict[str, tuple[str, str, float | None, float | None]] = {}
        self._sent_rates: Rates = {}

    def due(self) -> SignalCatalogue | None:
        """The catalogue if it is worth sending now (then counted as sent), else None.
        Decided on the store's raw counts, so a tick that sends nothing builds nothing."""
        rates = self._rates()
        now = self._clock()
        if self.sent is not None and not rates_changed(self._sent_rates, rates):
            if rates == self._sent_rates or now - self._sent_at < self.refresh:
                return None
        catalogue = build_catalogue(rates, self._decoders, self._described)
        self.sent, self._sent_rates, self._sent_at = catalogue, rates, now
        return catalogue

    def __call__(self, fresh: bool) -> SignalCatalogue | None:
        """For the uplink: on a new connection (`fresh`) always, else when it changed
        (the server may have restarted and forgotten it)."""
        if fresh:
            self.sent = None
        return self.due()
