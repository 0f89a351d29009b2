"""The sd_notify protocol, spoken directly: readiness, status, watchdog, stopping.

Used by both services (`oodida agent`, `oodida server`) when systemd runs them as
`Type=notify`. No dependency: the protocol is one datagram of newline-separated
`KEY=VALUE` lines sent to the AF_UNIX socket named by `$NOTIFY_SOCKET` (a path, or
an abstract-namespace name written with a leading `@`), see sd_notify(3).

Outside systemd (`$NOTIFY_SOCKET` unset) every method is a silent no-op, so the
same code runs by hand, in tests and under the unit. A failed send is logged once
and never raised: a service must not die because its supervisor went away.

The watchdog: systemd sets `$WATCHDOG_USEC` (and `$WATCHDOG_PID`, the process that
must ping) when the unit has `WatchdogSec=`. We ping at half that period, as
sd_watchdog_enabled(3) recommends, and only from the asyncio event loop
(`Notifier.watchdog`): the ping is the proof that the loop still turns. A loop
wedged by a blocking call or a deadlock stops the pings, and systemd kills and
restarts the service (`Restart=on-failure` counts a watchdog timeout as failure).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

# A health check: None when the service is alive, else why it is not (logged).
Health = Callable[[], "str | None"]


class Notifier:
    """One service's channel to systemd; a no-op when not started by systemd."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = _address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_period = _watchdog_period(env)
        self._failed = False
        self._full = False  # the reader's queue was full at the last send
        self._last_status: str | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> bool:
        """Send `KEY=VALUE` lines as one datagram; True if systemd got it."""
        if self.address is None:
            return False
        payload = "\n".join(line.replace("\n", " ") for line in lines).encode()  # one line per key
        try:
            # Non-blocking: a datagram socket whose reader is slow (its queue holds only
            # net.unix.max_dgram_qlen messages) must cost us a message, never the event
            # loop this runs on; a wedged loop would stop the very pings it sends.
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK) as sock:
                sock.sendto(payload, self.address)
        except BlockingIOError:
            if not self._full:
                log.warning("the notify socket %r is full; dropped %s (and drop more while it is)",
                            self.address, payload.split(b"\n", 1)[0].decode(errors="replace"))
                self._full = True
            return False
        except OSError as exc:
            if not self._failed:  # once: the socket is gone for good, most likely
                log.warning("cannot notify systemd at %r: %s", self.address, exc)
                self._failed = True
            return False
        self._full = False
        return True

    def ready(self, status: str | None = None) -> bool:
        """READY=1: the service is up (systemd then starts units ordered after it)."""
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        """STATUS=...: one line `systemctl status` shows; sent only when it changed."""
        if text == self._last_status:
            return True
        self._last_status = text
        return self.send(f"STATUS={text}")

    def stopping(self, status: str | None = None) -> bool:
        """STOPPING=1: the service got its stop request and is shutting down."""
        return self.send("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def ping(self) -> bool:
        return self.send("WATCHDOG=1")

    async def watchdog(self, health: Health | None = None) -> None:
        """Ping every half watchdog period, from this event loop, while `health()`
        says alive; runs until cancelled. Returns at once without a watchdog.

        A health check that fails stops the pings (logged once per episode): systemd
        then restarts the service after `WatchdogSec`. A check that recovers before
        then resumes them. The check runs on the loop, so it must be quick."""
        if self.watchdog_period is None or self.address is None:
            return
        interval = self.watchdog_period / 2
        sick: str | None = None
        while True:
            reason = health() if health is not None else None
            if reason is None:
                if sick is not None:
                    log.warning("alive again (%s is over): watchdog pings resume", sick)
                sick = None
                self.ping()
            elif reason != sick:
                log.error("not alive: %s; no watchdog ping, systemd restarts the service if this lasts", reason)
                sick = reason
            await asyncio.sleep(interval)


def _address(value: str) -> str | bytes | None:
    """$NOTIFY_SOCKET as a sendto() address: '@name' is the abstract name '\\0name'."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    log.warning("NOTIFY_SOCKET=%r is neither a path nor an abstract name; not notifying", value)
    return None


def _watchdog_period(env: Mapping[str, str]) -> float | None:
    """Seconds from $WATCHDOG_USEC, if the watchdog is meant for this process."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None  # set for another process (we were started by the one it names)
    return int(usec) / 1_000_000
