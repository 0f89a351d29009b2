"""The fleet's signal catalogue: what each vehicle says it can serve.

Kept in memory per vehicle, the last catalogue it sent, also after it disconnects
(shown as not connected): a catalogue is the vehicle's to resend on every connect,
so nothing is lost when the server restarts.

At submit, a signal no selected vehicle serves is refused at once with the closest
names of the whole fleet's catalogue, rather than found out by every vehicle after
the assignment started. A vehicle that has not sent a catalogue (just connected, or
an agent older than the catalogue) is not held against the submit: when none of the
selected vehicles has reported one, nothing is refused here and the vehicles answer
for their signals as before. So an empty catalogue never refuses everything.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from oodida.core.suggest import close_matches
from oodida.wire.messages import SignalCatalogue, SignalInfo, SignalsReply, SignalsRequest, VehicleSignals


@dataclass(frozen=True)
class _Entry:
    reported: float
    signals: tuple[SignalInfo, ...]
    names: frozenset[str]  # as asked for: MESSAGE.SIGNAL, and the bare SIGNAL


def _names(signals: Iterable[SignalInfo]) -> frozenset[str]:
    out: set[str] = set()
    for s in signals:
        out.add(s.name)
        out.add(s.name.rpartition(".")[2])
    return frozenset(out)


class Catalogue:
    def __init__(self) -> None:
        self._vehicles: dict[str, _Entry] = {}

    def update(self, vehicle: str, message: SignalCatalogue) -> None:
        self._vehicles[vehicle] = _Entry(time.time(), tuple(message.signals), _names(message.signals))

    def __contains__(self, vehicle: str) -> bool:
        return vehicle in self._vehicles

    def reply(self, request: SignalsRequest, connected: Iterable[str]) -> SignalsReply:
        """Every vehicle's catalogue, or one vehicle's; an unknown vehicle is a
        LookupError (the server answers not_found)."""
        online = set(connected)
        if request.vehicle is not None and request.vehicle not in self._vehicles:
            state = "is connected but has sent no signal catalogue yet" if request.vehicle in online else (
                "has sent no signal catalogue (not connected since the server started)"
            )
            raise LookupError(f"vehicle {request.vehicle} {state}")
        chosen = [request.vehicle] if request.vehicle is not None else sorted(self._vehicles)
        return SignalsReply(
            id=request.id,
            vehicles=[
                VehicleSignals(
                    vehicle=v, connected=v in online, reported=self._vehicles[v].reported,
                    signals=list(self._vehicles[v].signals),
                )
                for v in chosen
            ],
        )

    def refusal(self, signals: Iterable[str], vehicles: Iterable[str]) -> str | None:
        """Why a submit of `signals` to `vehicles` cannot work, or None. See the module
        docstring for what counts (vehicles without a catalogue do not)."""
        reported = [self._vehicles[v] for v in vehicles if v in self._vehicles]
        if not reported:
            return None
        known = frozenset().union(*(e.names for e in reported))
        problems = []
        for name in signals:
            if name in known:
                continue
            everyone = {s.name for e in self._vehicles.values() for s in e.signals}
            close = close_matches(name, everyone, n=5)
            hint = f"; did you mean {', '.join(close)}?" if close else " (oodida signals lists them)"
            problems.append(f"unknown signal {name!r}: none of the selected vehicles records it{hint}")
        return "\n".join(problems) or None
