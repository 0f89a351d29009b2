"""Revoking a credential also ends the sessions it opened.

`oodida credentials revoke` runs in another process and only writes the database;
the handshake then refuses the identity. A vehicle or analyst already connected would
keep its session until it next reconnects, which is not what an operator revoking a
stolen credential means. So the server looks, every `interval` seconds, for
credentials revoked (or expired) since its last look, tells their sessions why, and
closes them. One indexed query per interval, however many sessions there are.

Sessions are held weakly: a connection that ended is forgotten without bookkeeping.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable

from oodida.link import Channel, ChannelError
from oodida.server.credentials import Credentials
from oodida.wire.messages import ErrorCode

log = logging.getLogger(__name__)


class Revoker:
    def __init__(self, credentials: Credentials, interval: float = 5.0) -> None:
        self.credentials = credentials
        self.interval = interval
        self._sessions: dict[str, weakref.WeakSet[Channel]] = {}
        self._checked = time.time()

    def admit(self, identity: str, channel: Channel) -> None:
        """Remember a session that just completed its handshake as `identity`."""
        self._sessions.setdefault(identity, weakref.WeakSet()).add(channel)

    async def check(self) -> list[str]:
        """End the sessions of credentials revoked or expired since the last check;
        the identities whose sessions were ended."""
        now = time.time()
        ended: list[str] = []
        for identity, reason in self.credentials.withdrawn_between(self._checked, now):
            channels = list(self._sessions.pop(identity, ()))
            for channel in channels:
                try:
                    await channel.send_bytes(channel.conn.error(reason, ErrorCode.AUTH))
                except ChannelError:
                    pass
                await channel.close()
            if channels:
                log.warning("ended %d session(s) of %s: %s", len(channels), identity, reason)
                ended.append(identity)
        self._checked = now
        for identity in [i for i, s in self._sessions.items() if not s]:
            del self._sessions[identity]
        return ended

    async def run(self, fatal: Callable[[BaseException], bool] | None = None) -> None:
        """Check every `interval` s until cancelled, or until `fatal` says an error
        ends the server (a corrupt database: it has then been logged once)."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except Exception as exc:  # a failed look must not end the watch
                if fatal is not None and fatal(exc):
                    return
                log.exception("checking for revoked credentials failed")


__all__ = ["Revoker"]
