"""A TCP proxy on loopback that cuts connections when told: a bad network, for real.

Agents connect to the proxy, the proxy connects to the server and copies bytes both
ways, each chunk after `delay` seconds (latency, so a run lasts long enough to be hit
at random moments). `cut()` aborts one live connection with a TCP reset on both
sides, as a dropped link or a NAT timeout does: neither peer gets a goodbye, both see
their socket fail. A peer that connects while the server is down is closed at once,
as a refused connection would be.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field


@dataclass(eq=False)
class Pair:
    """One proxied connection: the agent's side and the server's side."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    pumps: list[asyncio.Task[None]] = field(default_factory=list)

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            writer.transport.abort()


class CuttingProxy:
    def __init__(self, target_port: int, *, host: str = "127.0.0.1", delay: float = 0.0) -> None:
        self.host = host
        self.target_port = target_port
        self.delay = delay
        self.pairs: set[Pair] = set()
        self.port: int | None = None
        self.cuts = 0
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._on_connect, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for pair in list(self.pairs):
            pair.abort()
        pumps = [p for pair in self.pairs for p in pair.pumps]
        for pump in pumps:
            pump.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def cut(self, rng: random.Random) -> bool:
        """Reset one live connection, chosen by `rng`; False if there is none."""
        live = sorted(self.pairs, key=id)
        if not live:
            return False
        pair = live[rng.randrange(len(live))]
        self._cut(pair)
        return True

    def cut_all(self) -> int:
        pairs = list(self.pairs)
        for pair in pairs:
            self._cut(pair)
        return len(pairs)

    def _cut(self, pair: Pair) -> None:
        pair.abort()
        self.pairs.discard(pair)
        self.cuts += 1

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:  # the server is down: refuse, as it would
            writer.transport.abort()
            return
        pair = Pair(writer, up_writer)
        self.pairs.add(pair)
        pair.pumps = [
            asyncio.create_task(self._pump(reader, up_writer, pair)),
            asyncio.create_task(self._pump(up_reader, writer, pair)),
        ]
        await asyncio.gather(*pair.pumps, return_exceptions=True)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pair: Pair) -> None:
        """Copy one direction until either side ends; then end the whole pair (a proxy
        that kept one half open would hide the failure from the other peer)."""
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                if self.delay:
                    await asyncio.sleep(self.delay)
                writer.write(chunk)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self.pairs.discard(pair)
            pair.abort()
