"""Sending on a connection that is closing fails with `ChannelClosed`, over TLS too.

asyncio 3.11's TLS transport drops its protocol when it is closed a second time (a
vehicle that reconnects has its old connection closed, and the handler closes it again
on the way out); a write then raised AttributeError, which the runner took for a bug
and failed the whole assignment with (found by tests/integration/test_faults.py)."""

from __future__ import annotations

import asyncio

import pytest

from oodida.link import Channel, ChannelClosed
from oodida.link.tls import client_context, server_context
from oodida.server.pki import issue, make_ca
from oodida.wire import Connection, Side


@pytest.mark.timeout(30)
@pytest.mark.parametrize("tls", [True, False], ids=["tls", "plain"])
async def test_a_send_on_a_stream_closed_twice_is_channel_closed(tmp_path, tls):
    server_ssl = client_ssl = None
    if tls:
        ca = make_ca("test CA")
        ca.write(tmp_path / "ca.pem", tmp_path / "ca.key")
        issue(ca, "127.0.0.1", hosts=["127.0.0.1"], server=True).write(tmp_path / "s.pem", tmp_path / "s.key")
        server_ssl = server_context(cert=str(tmp_path / "s.pem"), key=str(tmp_path / "s.key"))
        client_ssl = client_context(ca=str(tmp_path / "ca.pem"))

    outcome: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        channel = Channel(reader, writer, Connection(Side.SERVER))
        writer.close()
        writer.close()  # as when a reconnecting vehicle's old connection is dropped, then its handler ends
        try:
            await channel.send_bytes(b"\x00" * 64)
        except BaseException as exc:  # noqa: BLE001 (what it raised is the point)
            outcome.set_result(exc)
        else:
            outcome.set_result(None)

    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=server_ssl)
    port = server.sockets[0].getsockname()[1]
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ssl)
    raised = await asyncio.wait_for(outcome, 10)
    writer.close()
    server.close()
    await server.wait_closed()
    assert isinstance(raised, ChannelClosed), repr(raised)
    assert "closing" in str(raised)
