"""The face every signal source shows the agent, whatever its device.

`agent.pump.Pump` (a CAN log or bus) and `agent.gps.GpsPump` (a serial GPS) are
different machines, one thread each, but the agent treats them alike: it starts and
stops them, and its status, metrics and catalogue read the same few fields. This
Protocol names that face once, so the agent's list of sources is typed by what it
uses and a third kind of source is checked against it, not found out at run time.
"""

from __future__ import annotations

from typing import Protocol

from oodida.wire.states import SourcePhase


class SourceDecoder(Protocol):
    """What the agent's status and metrics read of a source's decoder (the CAN
    `hw.dbc.SignalDecoder` and the GPS `hw.nmea.NmeaDecoder` count the same way)."""

    @property
    def unknown_frames(self) -> int: ...
    @property
    def malformed_frames(self) -> int: ...


class SignalSource(Protocol):
    """A running source: its name and state for the vehicle's status (`error` once it
    failed), the frames (or sentences) it read, its decoder, and a thread to start
    and stop."""

    @property
    def name(self) -> str: ...
    @property
    def state(self) -> SourcePhase: ...
    @property
    def error(self) -> str | None: ...
    @property
    def frames(self) -> int: ...
    @property
    def decoder(self) -> SourceDecoder: ...

    def start(self) -> None: ...
    def stop(self, timeout: float = 2.0) -> None: ...
