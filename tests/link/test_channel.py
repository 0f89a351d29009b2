"""The asyncio channel: errors translated at the boundary, cancellation never lost."""

from __future__ import annotations

import asyncio

import pytest

from oodida.link import Channel, ChannelError, connect
from oodida.wire import Connection, Role, Side
from tests.helpers import eventually


async def test_a_cancellation_during_close_is_not_swallowed():
    """Swallowing it left an agent deaf to SIGTERM: its uplink went on reconnecting."""

    held = []

    async def hold(reader, writer):
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    channel = Channel(reader, writer, Connection(Side.SERVER))
    closing = asyncio.create_task(channel.close())
    await asyncio.sleep(0)
    closing.cancel()
    try:
        with pytest.raises(asyncio.CancelledError):
            await closing
    finally:
        await asyncio.sleep(0.05)
        for w in held:
            w.close()
        server.close()
        await server.wait_closed()


async def test_nobody_listening_is_a_channel_error_with_the_address():
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(ChannelError, match=f"cannot connect to 127.0.0.1:{port}"):
        await connect("127.0.0.1", port, role=Role.VEHICLE, identity="v1", secret="s" * 16, timeout=2)


async def test_a_server_that_never_answers_the_hello_times_out_clearly():
    held = []

    async def silent(reader, writer):
        held.append(writer)
        await asyncio.sleep(10)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(ChannelError, match="did not answer the handshake"):
            await connect("127.0.0.1", port, role=Role.ANALYST, identity="a", secret="s" * 16, timeout=0.3)
    finally:
        for w in held:
            w.close()
        server.close()
        await server.wait_closed()


async def test_try_send_bytes_writes_at_once_only_when_send_bytes_would_not_wait():
    """The fleet's task goes out without a coroutine per vehicle; a socket whose buffer
    is full is left to `send_bytes`, which waits for it, so nothing piles up unbounded."""

    peers = []

    async def accept(reader, writer):
        peers.append((reader, writer))

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    channel = Channel(reader, writer, Connection(Side.SERVER))
    try:
        await eventually(lambda: peers, what="the server to accept the connection")
        peer_reader, _ = peers[0]
        assert channel.try_send_bytes(b"hello")
        assert await peer_reader.readexactly(5) == b"hello"
        # the peer stops reading: fill the socket and the transport's buffer
        writer.transport.set_write_buffer_limits(high=64 * 1024)
        while writer.transport.get_write_buffer_size() < 64 * 1024:
            writer.write(b"x" * 65536)
            await asyncio.sleep(0)
        buffered = writer.transport.get_write_buffer_size()
        assert not channel.try_send_bytes(b"more")
        assert writer.transport.get_write_buffer_size() == buffered  # nothing was added
        sending = asyncio.create_task(channel.send_bytes(b"waits"))  # holds the lock, waits to drain
        await asyncio.sleep(0.05)
        assert not sending.done()
        writer.transport.set_write_buffer_limits(high=1 << 30)  # room again, but send_bytes holds the lock
        assert not channel.try_send_bytes(b"x")
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)
    finally:
        await channel.close()
        for _, w in peers:
            w.close()
        server.close()
        await server.wait_closed()
