"""The client's two public pieces a front end needs (the dashboard is built on them):
when and why the connection ended, with no request pending, and a request sent as the
user asked it so that the server, not the client, refuses what the role may not do.
A real server in-process on loopback, plain TCP; no mocks."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from oodida.client.protocol import AnalystClient, ConnectionLost, RequestFailed
from oodida.server.app import Server
from oodida.server.credentials import Credentials
from oodida.wire import Role
from tests.conftest import run
from tests.credentials import ANALYST_SECRET, READER_SECRET, plain_config


async def _client(server: Server, identity: str, secret: str, role: Role, *, refuse_locally: bool = True
                  ) -> AnalystClient:
    assert server.port is not None
    return await AnalystClient.connect("127.0.0.1", server.port, secret, identity=identity, role=role,
                                       refuse_locally=refuse_locally)


def test_a_server_that_refuses_for_the_role_says_so_in_its_words_and_the_connection_goes_on(tmp_path: Path) -> None:
    async def main() -> None:
        server = Server(plain_config(tmp_path))
        await server.start()
        try:
            forwarding = await _client(server, "reader", READER_SECRET, Role.READER, refuse_locally=False)
            local = await _client(server, "reader", READER_SECRET, Role.READER)
            with pytest.raises(RequestFailed) as refused:
                await forwarding.cancel(1)
            assert "not allowed from a reader" in refused.value.reason, refused.value.reason
            assert refused.value.code and not isinstance(refused.value, ConnectionLost)  # the server's answer
            assert (await forwarding.status()).assignments == []  # refused, not ended
            assert forwarding.closed_reason is None
            with pytest.raises(RequestFailed) as here:  # the default: refused before anything is sent
                await local.cancel(1)
            assert here.value.reason == "a reader may not send 'cancel'"
            await forwarding.close()
            await local.close()
        finally:
            await server.stop()

    run(main())


def test_wait_closed_gives_the_servers_reason_when_it_ends_the_session(tmp_path: Path) -> None:
    async def main() -> None:
        config = plain_config(tmp_path, credential_check=0.05)
        server = Server(config)
        await server.start()
        try:
            client = await _client(server, "analyst", ANALYST_SECRET, Role.ANALYST)
            ended = asyncio.create_task(client.wait_closed())  # no request pending: the client still sees it
            await asyncio.sleep(0)
            assert not ended.done() and client.closed_reason is None
            store = Credentials(config.database)
            store.revoke("analyst")
            store.close()
            reason = await asyncio.wait_for(ended, 10)
            assert reason.startswith("the server ended the session: credential of analyst was revoked"), reason
            assert client.closed_reason == reason
            with pytest.raises(ConnectionLost):  # and a request after the end fails at once
                await client.status()
            await client.close()
            assert client.closed_reason == reason  # closing afterwards does not rewrite why it ended
        finally:
            await server.stop()

    run(main())


def test_wait_closed_says_the_connection_ended_when_the_server_goes_and_closed_when_we_close(tmp_path: Path) -> None:
    async def main() -> None:
        server = Server(plain_config(tmp_path))
        await server.start()
        ours = await _client(server, "analyst", ANALYST_SECRET, Role.ANALYST)
        await ours.close()
        assert await ours.wait_closed() == "closed by the client"
        with pytest.raises(ConnectionLost, match="closed by the client"):
            await ours.status()
        theirs = await _client(server, "analyst", ANALYST_SECRET, Role.ANALYST)
        ended = asyncio.create_task(theirs.wait_closed())
        await server.stop()
        reason = await asyncio.wait_for(ended, 10)
        assert reason.startswith("the connection to the server ended: "), reason
        await theirs.close()

    run(main())
