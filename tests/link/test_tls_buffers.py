"""A server's TLS connections get small read buffers (asyncio's default is 256 KiB
each, 3 GiB at 10,000 vehicles); a message many times that size still crosses whole."""

from __future__ import annotations

import asyncio
import os
from asyncio import sslproto

import pytest

from oodida.link.tls import (
    TLS_READ_BUFFER,
    client_context,
    limit_tls_read_buffers,
    server_context,
)
from oodida.server.pki import issue, make_ca


@pytest.mark.timeout(60)
async def test_small_tls_read_buffers_still_carry_a_message_far_larger_than_them(tmp_path, monkeypatch):
    monkeypatch.setattr(sslproto.SSLProtocol, "max_size", sslproto.SSLProtocol.max_size)  # undone after the test
    limit_tls_read_buffers()
    assert sslproto.SSLProtocol.max_size == TLS_READ_BUFFER == 32 * 1024
    ca = make_ca("test CA")
    ca.write(tmp_path / "ca.pem", tmp_path / "ca.key")
    issue(ca, "127.0.0.1", hosts=["127.0.0.1"], server=True).write(tmp_path / "s.pem", tmp_path / "s.key")
    payload = os.urandom(3 * 1024 * 1024)

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.readexactly(len(payload))
        writer.write(data)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(
        echo, "127.0.0.1", 0, ssl=server_context(cert=str(tmp_path / "s.pem"), key=str(tmp_path / "s.key"))
    )
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client_context(ca=str(tmp_path / "ca.pem"))
    )
    writer.write(payload)
    await writer.drain()
    back = await reader.readexactly(len(payload))
    writer.close()
    server.close()
    await server.wait_closed()
    assert back == payload
