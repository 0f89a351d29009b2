"""Moves frames from a source, through the DBC decoder, into the signal store.

One reader thread per source: python-can's `recv` and `LogReader` block, and a
thread keeps the asyncio loop free for the server link. A source that fails is
reported (state and reason) and does not take the agent down.
"""

from __future__ import annotations

import logging
import threading

from agent.store import SignalStore
from hw.dbc import SignalDecoder
from hw.source import FrameSource

log = logging.getLogger(__name__)


class Pump:
    def __init__(self, name: str, source: FrameSource, decoder: SignalDecoder, store: SignalStore) -> None:
        self.name = name
        self.source = source
        self.decoder = decoder
        self.store = store
        self.state = "starting"
        self.error: str | None = None
        self.frames = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"pump-{name}", daemon=True)
        # Counted from now, not from start(): a window asked for before the first
        # frame must wait for this source, not conclude that every source has ended.
        store.sources_running += 1

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        try:
            self.source.close()
        except Exception as exc:  # closing a broken bus must not block shutdown
            log.debug("closing %s: %s", self.name, exc)

    def _run(self) -> None:
        decode = self.decoder.decode
        add = self.store.add
        self.state = "running"
        try:
            for frame in self.source.frames(self._stop):
                self.frames += 1
                values = decode(frame.arbitration_id, frame.data)
                if values:
                    add(frame.timestamp, values)
            self.state = "ended"
            if not self._stop.is_set():
                log.info("source %s ended after %d frames", self.name, self.frames)
        except Exception as exc:
            self.state, self.error = "failed", str(exc)
            log.error("source %s failed: %s", self.name, exc)
        finally:
            self.store.source_ended()
