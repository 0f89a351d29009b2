"""Moves frames from a source, through the DBC decoder, into the signal store.

One reader thread per source: python-can's `recv` and `LogReader` block, and a
thread keeps the asyncio loop free for the server link. A source that fails is
reported (state and reason) and does not take the agent down.

Frames come in batches of what the source has at once (`FrameSource.batches`): a
replay at speed 0 or a busy bus gives thousands, decoded with numpy in one
`decode_batch` and appended with one `add_batch`; a quiet source gives one or a few,
which the per-frame decoder handles for less than numpy's fixed cost per call.
"""

from __future__ import annotations

import logging
import threading

from oodida.agent.store import SignalStore
from oodida.hw.dbc import SignalDecoder
from oodida.hw.frames import COLUMNS_FROM, FrameBatch
from oodida.hw.source import FrameSource
from oodida.wire.states import SourcePhase

log = logging.getLogger(__name__)

# Most frames taken from a source at once: a few ms of decoding, so `stop` is
# noticed promptly and the store's lock is never held long.
BATCH_FRAMES = 4096
# Batches smaller than this are decoded frame by frame: below it, numpy's fixed cost
# per id and signal outweighs the per-frame decoder's cost per frame (and sources
# hand such batches over as rows, `hw.frames.FrameRows`, not columns).
MIN_BATCH = COLUMNS_FROM


class SourceThread:
    """What every source's reader thread shares (CAN pumps, GPS receivers): a state
    and error for the vehicle's status, a frame count, a daemon thread, and a place
    in the store's count of running sources from construction on (not from start():
    a window asked for before the first frame must wait for this source, not
    conclude that every source has ended)."""

    def __init__(self, name: str, store: SignalStore, thread_name: str) -> None:
        self.name = name
        self.store = store
        self.state = SourcePhase.STARTING
        self.error: str | None = None
        self.frames = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)
        store.sources_running += 1

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        self._close()

    def _run(self) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        """Release the device once the thread was told to stop."""


class Pump(SourceThread):
    def __init__(self, name: str, source: FrameSource, decoder: SignalDecoder, store: SignalStore) -> None:
        super().__init__(name, store, f"pump-{name}")
        self.source = source
        self.decoder = decoder

    def _close(self) -> None:
        try:
            self.source.close()
        except Exception as exc:  # closing a broken bus must not block shutdown
            log.debug("closing %s: %s", self.name, exc)

    def _run(self) -> None:
        decoder = self.decoder
        store = self.store
        self.state = SourcePhase.RUNNING
        try:
            for batch in self.source.batches(self._stop, BATCH_FRAMES):
                self.frames += len(batch)
                if isinstance(batch, FrameBatch) and len(batch) >= MIN_BATCH:
                    store.add_batch(decoder.decode_batch(batch))
                    continue
                for timestamp, frame_id, data in batch.rows():
                    values = decoder.decode(frame_id, data)
                    if values:
                        store.add(timestamp, values)
            self.state = SourcePhase.ENDED
            if not self._stop.is_set():
                log.info("source %s ended after %d frames", self.name, self.frames)
        except Exception as exc:
            self.state, self.error = SourcePhase.FAILED, str(exc)
            log.error("source %s failed: %s", self.name, exc)
        finally:
            self.store.source_ended()
