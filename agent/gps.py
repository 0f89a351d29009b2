"""Moves a GPS receiver's sentences into the signal store, through unplugs and resets.

The counterpart of `agent.pump.Pump` for a serial GPS: one reader thread (pyserial
reads block), the same face to the agent (`name`, `state`, `error`, `frames`,
`decoder`, `start`, `stop`), so the agent's status lists it beside the CAN sources.
What differs is that a GPS comes and goes: a USB receiver is unplugged, browns out
when the engine cranks, or is not there yet when the agent starts. None of that may
take the agent down, so this pump never ends on its own: when the device vanishes it
reports the gap (state `failed`, the reason and since when, a log line), retries
opening the port with exponential backoff, and when the device is back it logs how
long the gap lasted and goes on; the samples simply have a hole in that time.

Timestamps are the host clock (`time.time()`) when the chunk that completed the
sentence arrived, not the fix time inside the sentence: the CAN frames of a live bus
are stamped on the host clock too (SocketCAN's receive time), so GPS and CAN samples
line up in one window; and GGA carries only a time of day, which a receiver without
a fix reports wrong or not at all. The stamp lags the fix by the receiver's latency
plus the sentence's transmission (about 70 ms at 9600 Bd). The receiver's own UTC is
kept as the signal `<prefix>.UTC` (from RMC), so the host clock can be checked
against it.
"""

from __future__ import annotations

import logging
import threading
import time

from oodida.agent.pump import SourceThread
from oodida.agent.store import SignalStore
from oodida.hw.errors import SourceError
from oodida.hw.nmea import NmeaDecoder
from oodida.hw.serial_port import SerialPort
from oodida.wire.states import SourcePhase

log = logging.getLogger(__name__)


class GpsPump(SourceThread):
    def __init__(
        self,
        name: str,
        port: SerialPort,
        decoder: NmeaDecoder,
        store: SignalStore,
        *,
        reopen_min: float = 0.5,
        reopen_max: float = 10.0,
    ) -> None:
        if not 0 < reopen_min <= reopen_max:
            raise ValueError(f"need 0 < reopen_min <= reopen_max, got {reopen_min}, {reopen_max}")
        # Counted among the running sources from now on (SourceThread), and never given
        # up while the agent runs, so a `next` window waits through a GPS gap rather
        # than failing at once. `frames`: GGA/RMC sentences read; bad ones are in
        # decoder.malformed_frames.
        super().__init__(name, store, f"gps-{name}")
        self.port = port
        self.decoder = decoder
        self.reopen_min = reopen_min
        self.reopen_max = reopen_max
        self._last = 0.0  # the newest timestamp given
        self.gaps = 0  # times the device vanished (or could not be opened) and came back
        self.opened = 0  # successful opens of the port: 1 + reopens
        store.declare(list(decoder.signal_names))

    def _close(self) -> None:
        self.port.close()

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # a bug of ours; the agent goes on without this source
            self.state, self.error = SourcePhase.FAILED, f"{type(exc).__name__}: {exc}"
            log.exception("GPS source %s failed", self.name)
        else:
            self.state = SourcePhase.ENDED
        finally:
            self.port.close()
            self.store.source_ended()

    def _loop(self) -> None:
        stop = self._stop
        backoff = self.reopen_min
        gone_since: float | None = None  # monotonic time the current gap began
        gone = ""  # what began it, and when (wall clock), for operators
        while not stop.is_set():
            try:
                self.port.open()
            except SourceError as exc:
                if gone_since is None:
                    gone_since = time.monotonic()
                    gone = f"no device since {time.strftime('%H:%M:%S')}: {exc}"
                    log.warning("GPS source %s: %s; retrying", self.name, exc)
                self._failed(f"{gone}; retrying every {backoff:g} s")
                stop.wait(backoff)
                backoff = min(backoff * 2, self.reopen_max)
                continue
            self.opened += 1
            self.decoder.reset()
            if gone_since is not None:
                self.gaps += 1
                log.warning(
                    "GPS source %s is back after a gap of %.1f s (%s)",
                    self.name, time.monotonic() - gone_since, gone,
                )
                gone_since = None
            backoff = self.reopen_min
            self.state, self.error = SourcePhase.RUNNING, None
            try:
                self._read(stop)
            except SourceError as exc:
                gone_since = time.monotonic()
                gone = f"device gone since {time.strftime('%H:%M:%S')}: {exc}"
                self._failed(f"{gone}; reopening")
                log.warning("GPS source %s: device gone (%s); reopening", self.name, exc)
            finally:
                self.port.close()

    def _failed(self, error: str) -> None:
        # error before state: a reader that sees "failed" also sees why
        self.error = error[:1000]  # the status message bounds its text; a long port path must not break it
        self.state = SourcePhase.FAILED

    def _read(self, stop: threading.Event) -> None:
        read, feed, add, decoder = self.port.read, self.decoder.feed, self.store.add, self.decoder
        while not stop.is_set():
            data = read()
            if not data:
                continue
            # Never earlier than the last stamp: the store's buffers are kept in time
            # order, and the host clock may be stepped back (NTP, a GPS-disciplined clock).
            arrived = self._last = max(time.time(), self._last)
            for values in feed(data):
                add(arrived, values)
            self.frames = decoder.sentences
