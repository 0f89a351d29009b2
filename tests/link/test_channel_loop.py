"""The channel's receive loop and its refuse-and-linger, over real loopback sockets.

`Channel.messages` is the one loop of the server's rooms, the agent's uplink and the
simulated fleet: a bad message that leaves the stream in step is answered and
skipped, a fatal one ends the loop, a peer that vanishes ends it too. `refuse` is how
the server turns a flood away so that the refused still learn why.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import cbor2
import pytest

from oodida.link import Channel, ChannelClosed, ChannelError, ProtocolBroken
from oodida.wire import Connection, RemoteProtocolError, Role, Side, State
from oodida.wire.codec import decode_payload, encode_payload
from oodida.wire.framing import encode_frame
from oodida.wire.messages import Error, ErrorCode, Hello, Message, Proof, StatusRequest, VehicleStatus
from tests.conftest import run

STATUS = VehicleStatus(frames=1, unknown_frames=0, malformed_frames=0, signal_time=None, sources=[], signals=[])


def ready_pair(max_frame: int = 1 << 20) -> tuple[Connection, Connection]:
    """A server and a vehicle's connection past the handshake, driven sans-IO (the
    proof's arithmetic is the application's: the connection only keeps the order)."""
    server = Connection(Side.SERVER, max_frame=max_frame)
    client = Connection(Side.CLIENT, role=Role.VEHICLE)
    server.receive_data(client.hello("v1", b"n" * 16))
    hello = server.next_event()
    assert isinstance(hello, Hello)
    client.receive_data(server.challenge(b"n" * 32, b"salt" * 4, 4096))
    client.next_event()
    server.receive_data(client.proof(b"p" * 32))
    assert isinstance(server.next_event(), Proof)
    client.receive_data(server.accept(hello, session="s"))
    client.next_event()
    assert server.state is State.READY and client.state is State.READY
    return server, client


@asynccontextmanager
async def pair(server_conn: Connection) -> AsyncIterator[tuple[Channel, asyncio.StreamReader, asyncio.StreamWriter]]:
    """Our channel (the server's end) and the peer's raw stream, over loopback TCP."""
    accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put((reader, writer))

    listener = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    peer_reader, peer_writer = await asyncio.open_connection("127.0.0.1", port)
    reader, writer = await accepted.get()
    channel = Channel(reader, writer, server_conn)
    try:
        yield channel, peer_reader, peer_writer
    finally:
        await channel.close()
        peer_writer.close()
        listener.close()
        await listener.wait_closed()


async def read_message(reader: asyncio.StreamReader) -> Message:
    (size,) = struct.unpack(">I", await reader.readexactly(4))
    return decode_payload(await reader.readexactly(size))


def frame(message: Message) -> bytes:
    """A message framed as a peer that ignores its own side's rules would send it."""
    return encode_frame(encode_payload(message))


def test_messages_come_in_order_and_the_loop_ends_when_the_peer_closes():
    async def main():
        server, client = ready_pair()
        async with pair(server) as (channel, _, peer):
            peer.write(client.send(STATUS) + client.send(Error(reason="over")))
            peer.write_eof()
            got: list[Message] = []
            with pytest.raises(ChannelClosed, match="closed the connection"):
                async for message in channel.messages():
                    got.append(message)
            assert got == [STATUS, Error(reason="over")]

    run(main())


def test_a_message_not_allowed_now_is_answered_with_its_id_and_the_loop_goes_on():
    async def main():
        server, client = ready_pair()
        told: list[RemoteProtocolError] = []
        async with pair(server) as (channel, peer_reader, peer):
            peer.write(frame(StatusRequest(id=7)) + client.send(STATUS))  # an analyst's request, from a vehicle
            messages = channel.messages(on_error=told.append)
            assert await anext(messages) == STATUS
            assert [e.request for e in told] == [7] and not told[0].fatal
            reply = await read_message(peer_reader)
            assert isinstance(reply, Error)
            assert reply.id == 7 and reply.code is ErrorCode.BAD_MESSAGE
            assert "not allowed from a vehicle" in reply.reason
            await messages.aclose()

    run(main())


def test_undecodable_cbor_is_answered_and_skipped():
    async def main():
        server, client = ready_pair()
        async with pair(server) as (channel, peer_reader, peer):
            junk = cbor2.dumps([1, 2, 3])  # CBOR, but not a map
            peer.write(struct.pack(">I", len(junk)) + junk + client.send(STATUS))
            messages = channel.messages()
            assert await anext(messages) == STATUS
            reply = await read_message(peer_reader)
            assert isinstance(reply, Error) and "must be a CBOR map" in reply.reason
            await messages.aclose()

    run(main())


def test_with_reply_false_the_bad_message_is_only_told_to_on_error():
    async def main():
        server, client = ready_pair()
        told: list[RemoteProtocolError] = []
        async with pair(server) as (channel, peer_reader, peer):
            peer.write(frame(StatusRequest(id=3)) + client.send(STATUS))
            messages = channel.messages(on_error=told.append, reply=False)
            assert await anext(messages) == STATUS
            assert len(told) == 1
            await messages.aclose()
            await channel.close()
            assert await peer_reader.read() == b""  # no error reply came before the close

    run(main())


def test_a_frame_over_the_limit_ends_the_loop_with_the_reason_and_no_reply():
    async def main():
        server, client = ready_pair(max_frame=1024)
        async with pair(server) as (channel, peer_reader, peer):
            peer.write(client.send(STATUS) + struct.pack(">I", 1 << 20) + b"x" * 100)
            got: list[Message] = []
            with pytest.raises(ProtocolBroken) as raised:
                async for message in channel.messages():
                    got.append(message)
            assert got == [STATUS]
            assert "exceeds" in raised.value.reason and channel.peer in str(raised.value)
            assert isinstance(raised.value, ChannelError)  # callers that end on ChannelError end here too
            await channel.close()
            assert await peer_reader.read() == b""

    run(main())


def test_a_peer_that_vanishes_mid_stream_ends_the_loop_with_a_channel_error():
    async def main():
        server, client = ready_pair()
        async with pair(server) as (channel, _, peer):
            peer.write(client.send(STATUS))
            await peer.drain()
            sock = peer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            peer.transport.abort()  # a reset, not a close: the vehicle lost power
            got: list[Message] = []
            with pytest.raises(ChannelError):
                async for message in channel.messages():
                    got.append(message)
            assert got == [STATUS]

    run(main())


def test_refuse_tells_a_peer_in_the_handshake_why_even_when_it_sent_what_we_never_read():
    """Closing with the peer's hello unread would reset the connection and lose the
    reason in the peer's kernel; `refuse` reads it out first."""

    async def main():
        async with pair(Connection(Side.SERVER)) as (channel, peer_reader, peer):
            hello = Connection(Side.CLIENT, role=Role.VEHICLE).hello("v1", b"n" * 16)
            peer.write(hello * 50)  # unread data on our side
            await peer.drain()
            await asyncio.sleep(0.05)
            refusing = asyncio.create_task(channel.refuse("server busy: try again later", linger=5.0))
            reply = await read_message(peer_reader)
            assert isinstance(reply, Error)
            assert reply.code is ErrorCode.REFUSED and reply.reason == "server busy: try again later"
            assert await peer_reader.read() == b""  # our FIN after it
            peer.close()  # the peer hangs up: the linger ends at once, not after 5 s
            await asyncio.wait_for(refusing, 2.0)
            assert channel.conn.state is State.CLOSED

    run(main())


def test_refuse_lingers_no_longer_than_told_for_a_peer_that_never_hangs_up():
    async def main():
        async with pair(Connection(Side.SERVER)) as (channel, peer_reader, _):
            loop = asyncio.get_running_loop()
            started = loop.time()
            await channel.refuse("no", linger=0.2)
            assert loop.time() - started < 2.0
            reply = await read_message(peer_reader)
            assert isinstance(reply, Error) and reply.reason == "no"

    run(main())


def test_tell_after_the_handshake_is_an_error_and_never_raises_on_a_dead_stream():
    async def main():
        server, _ = ready_pair()
        async with pair(server) as (channel, peer_reader, _):
            assert channel.tell("the server is stopping", ErrorCode.INTERNAL)
            reply = await read_message(peer_reader)
            assert isinstance(reply, Error) and reply.code is ErrorCode.INTERNAL
            assert channel.conn.state is State.READY  # an error, not a rejection
            await channel.close()
            assert not channel.tell("too late")

    run(main())


def test_plain_tcp_has_no_peer_certificate():
    async def main():
        async with pair(Connection(Side.SERVER)) as (channel, _, _):
            assert channel.peercert is None

    run(main())
