"""A GPS receiver played into a real pseudo-terminal, for tests of the serial path.

The agent opens `path` (a symlink to the pty's slave side) with pyserial, exactly as
it opens /dev/ttyUSB0 on a vehicle; the test writes what a receiver would send into
the master side. `vanish()` is an unplugged receiver: the master closes (the slave's
reads fail with EIO, as a USB serial device's do) and the device node disappears.
A new `PtyReceiver` on the same path is the receiver plugged back in.
"""

from __future__ import annotations

import errno
import os
import threading
import time
import tty
from collections.abc import Callable, Sequence
from pathlib import Path


class PtyReceiver:
    def __init__(self, path: Path, lines: Sequence[bytes], *, interval: float = 0.01, loop: bool = True) -> None:
        self.path = path
        self.lines = list(lines)
        self.interval = interval
        self.loop = loop
        self.master, self.slave = os.openpty()
        # Raw, as pyserial leaves it: in the default cooked mode the pty echoes what
        # the master writes back into the master, and an unread echo blocks the writer.
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path.symlink_to(os.ttyname(self.slave))
        self.written = 0  # lines written whole
        self._extra: list[bytes] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._play, name="pty-receiver", daemon=True)

    def start(self) -> PtyReceiver:
        self._thread.start()
        return self

    def inject(self, data: bytes) -> None:
        """Bytes to send before the next line: noise, half a sentence, ..."""
        with self._lock:
            self._extra.append(data)

    def _write(self, data: bytes) -> bool:
        try:
            return os.write(self.master, data) == len(data)
        except OSError as exc:  # a full buffer: the line is lost, as on a UART overrun
            if exc.errno in (errno.EAGAIN, errno.EIO):
                return False
            raise

    def _play(self) -> None:
        while not self._stop.is_set():
            for data in self.lines:
                with self._lock:
                    extra, self._extra = self._extra, []
                for chunk in extra:
                    self._write(chunk)
                if self._write(data):
                    self.written += 1
                if self._stop.wait(self.interval):
                    return
            if not self.loop:
                return

    def vanish(self) -> None:
        """The receiver is unplugged: its node disappears and reads of an open port fail."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(5)
        self.path.unlink()
        os.close(self.master)
        os.close(self.slave)

    def close(self) -> None:
        if not self._stop.is_set():
            self.vanish()


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.01) -> None:
    """Poll a condition on another thread's progress: the reader thread has no event
    to await, and the condition names what the test waits for."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s")
        time.sleep(interval)
