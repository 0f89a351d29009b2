"""The asyncio channel: errors translated at the boundary, cancellation never lost."""

from __future__ import annotations

import asyncio

import pytest

from link import Channel, ChannelError, connect
from tests.conftest import run
from wire import Connection, Role, Side


def test_a_cancellation_during_close_is_not_swallowed():
    """Swallowing it left an agent deaf to SIGTERM: its uplink went on reconnecting."""

    async def main():
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

    run(main())


def test_nobody_listening_is_a_channel_error_with_the_address():
    async def main():
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        with pytest.raises(ChannelError, match=f"cannot connect to 127.0.0.1:{port}"):
            await connect("127.0.0.1", port, role=Role.VEHICLE, identity="v1", secret="s" * 16, timeout=2)

    run(main())


def test_a_server_that_never_answers_the_hello_times_out_clearly():
    async def main():
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

    run(main())
