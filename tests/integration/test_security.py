"""Trust, end to end: TLS with a deployment `oodida init` wrote, the challenge-response
handshake's refusals and their reasons, a replayed handshake, and what each role may
send. Real servers on real sockets; the peers are played by hand so they can lie."""

from __future__ import annotations

import asyncio
import ssl
import time
from pathlib import Path

import pytest

from oodida.agent.config import ConfigError as AgentConfigError
from oodida.agent.config import load_agent_config
from oodida.client.protocol import AnalystClient, RequestFailed
from oodida.link import Channel, ChannelError, HandshakeRefused, connect
from oodida.link.credfile import CredentialFileError, load_client_credentials
from oodida.link.tls import client_context
from oodida.server.app import Server
from oodida.server.config import ConfigError, load_server_config
from oodida.server.credentials import Credentials
from oodida.server.init import Deployment, init_deployment
from oodida.server.pki import issue, make_ca
from oodida.testing import free_port
from oodida.wire.connection import RECEIVABLE, Side, State
from oodida.wire.messages import (
    MESSAGE_TYPES,
    AssignmentSpec,
    Error,
    ErrorCode,
    Result,
    ResultAck,
    Role,
    StatusReply,
    StatusRequest,
    WindowSpec,
)
from tests.credentials import ANALYST_SECRET, READER_SECRET, VEHICLE_SECRET, plain_config
from tests.wire.examples import ONE_OF_EACH, frame

HOSTS = ["127.0.0.1", "localhost"]


def deployment(tmp_path: Path, **options: object) -> Deployment:
    return init_deployment(
        tmp_path / "d", vehicles=["car-1", "car-2"], analysts=["alice"], readers=["bob"], hosts=HOSTS, port=free_port(),
        **options,  # type: ignore[arg-type]
    )


def vehicle_context(d: Deployment, vehicle: str, *, cert_of: str | None = None) -> ssl.SSLContext:
    """car's TLS context: the deployment's CA, and (optionally) the certificate of `cert_of`."""
    directory = d.vehicles[vehicle]
    if cert_of is None:
        return client_context(ca=str(directory / "ca.pem"))
    other = d.vehicles[cert_of]
    return client_context(ca=str(directory / "ca.pem"), cert=str(other / "cert.pem"), key=str(other / "key.pem"))


def secret_of(d: Deployment, vehicle: str) -> str:
    return (d.vehicles[vehicle] / "secret").read_text().strip()


async def as_vehicle(server: Server, d: Deployment, vehicle: str, *, secret: str | None = None,
                     context: ssl.SSLContext | None = None) -> Channel:
    channel, _ = await connect(
        "127.0.0.1", server.port or 0, role=Role.VEHICLE, identity=vehicle,
        secret=secret if secret is not None else secret_of(d, vehicle),
        ssl_context=context if context is not None else vehicle_context(d, vehicle, cert_of=vehicle),
    )
    return channel


# --- the handshake over TLS: who gets in, and why not ----------------------------------------


async def test_credentials_from_init_connect_over_tls_and_refusals_say_why(tmp_path: Path, start_server) -> None:
    d = deployment(tmp_path)
    store = Credentials(d.database)
    old_secret = store.add("old-car", Role.VEHICLE, expires=time.time() - 60)
    gone_secret = store.add("gone-car", Role.VEHICLE)
    store.revoke("gone-car")
    store.close()

    server = await start_server(load_server_config(d.server_config))
    channel = await as_vehicle(server, d, "car-1")
    assert channel.writer.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
    await channel.close()
    async with await AnalystClient.from_file(d.clients["alice"], server=("127.0.0.1", server.port)) as alice:
        assert isinstance(await alice.status(), StatusReply)
    context = vehicle_context(d, "car-1")

    async def refused(identity: str, secret: str, role: Role = Role.VEHICLE) -> str:
        with pytest.raises(HandshakeRefused) as info:
            await connect("127.0.0.1", server.port, role=role, identity=identity, secret=secret,
                          ssl_context=context)
        assert info.value.code is ErrorCode.AUTH
        return info.value.reason

    assert await refused("car-9", "x" * 43) == "no credential for vehicle 'car-9'"
    assert await refused("car-1", "not-the-secret-of-car-1") == (
        "wrong proof (wrong secret, or a replayed handshake) for vehicle car-1"
    )
    assert (await refused("car-1", secret_of(d, "car-2"))).startswith("wrong proof")
    assert await refused("car-1", secret_of(d, "car-1"), Role.ANALYST) == (
        "credential of car-1 is for role vehicle, not analyst"
    )
    assert await refused("bob", "whatever-secret", Role.ANALYST) == (
        "credential of bob is for role reader, not analyst"
    )
    assert (await refused("old-car", old_secret)).startswith("credential of old-car expired at 20")
    assert (await refused("gone-car", gone_secret)).startswith("credential of gone-car was revoked at")
    # and the server goes on serving the honest
    channel = await as_vehicle(server, d, "car-2")
    await channel.close()


async def test_a_replayed_handshake_is_refused(tmp_path: Path, start_server) -> None:
    """Record every byte a real client sends in a successful handshake (plain TCP on
    loopback, so the bytes are readable), then send the same bytes on a new
    connection: the server's fresh nonce makes the recorded proof worthless."""
    config = plain_config(tmp_path, vehicles=("car-1",))

    server = await start_server(config)
    recorded: list[bytes] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, keep: list[bytes] | None) -> None:
        try:
            while data := await reader.read(65536):
                if keep is not None:
                    keep.append(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def recorder(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", server.port)
        await asyncio.gather(pipe(reader, up_writer, recorded), pipe(up_reader, writer, None))

    proxy = await asyncio.start_server(recorder, "127.0.0.1", 0)
    proxy_port = proxy.sockets[0].getsockname()[1]
    try:
        channel, welcome = await connect("127.0.0.1", proxy_port, role=Role.VEHICLE, identity="car-1",
                                         secret=VEHICLE_SECRET)
        assert welcome.signature
        await channel.close()
        handshake_bytes = b"".join(recorded)
        assert b"car-1" in handshake_bytes and VEHICLE_SECRET.encode() not in handshake_bytes
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(handshake_bytes)  # hello and proof, exactly as recorded
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)  # until the server closes
        writer.close()
        assert b"challenge" in answer  # a fresh challenge, which the replay cannot answer
        assert b"wrong proof (wrong secret, or a replayed handshake)" in answer
        assert b"welcome" not in answer
    finally:
        proxy.close()
        await proxy.wait_closed()


# --- roles: every message type each role may not send is refused, the session goes on ------------


async def test_every_message_a_role_may_not_send_is_refused_with_a_reason_and_the_session_goes_on(
        tmp_path: Path, start_server) -> None:
    config = plain_config(tmp_path, vehicles=("car-1",), analysts=("alice",), readers=("bob",))
    peers = {Role.VEHICLE: ("car-1", VEHICLE_SECRET), Role.ANALYST: ("alice", ANALYST_SECRET),
             Role.READER: ("bob", READER_SECRET)}
    assert set(ONE_OF_EACH) == set(MESSAGE_TYPES.values())  # every type of the protocol has an example

    server = await start_server(config)
    for role, (identity, secret) in peers.items():
        channel, _ = await connect("127.0.0.1", server.port, role=role, identity=identity, secret=secret)
        allowed = RECEIVABLE[(Side.SERVER, State.READY, role)]
        refused = sorted((cls for cls in ONE_OF_EACH if cls not in allowed), key=lambda c: c.__name__)
        assert refused, role
        for cls in refused:
            await channel.send_bytes(frame(ONE_OF_EACH[cls]))  # past our own client's checks
            reply = await asyncio.wait_for(channel.recv(), 10)
            tag = cls.__struct_config__.tag
            assert isinstance(reply, Error), (role, cls)
            assert f"{tag!r} is not allowed from a {role.value}" in reply.reason, reply.reason
            assert reply.id == getattr(ONE_OF_EACH[cls], "id", None)
        await still_served(channel, role)
        await channel.close()


async def still_served(channel: Channel, role: Role, identity: str = "car-1") -> None:
    """The session survived its refusals: it is still answered."""
    if role is Role.VEHICLE:
        result = Result(assignment=99, iteration=1, vehicle=identity, ok=True, code_hash="h", value=1)
        await channel.send(result)
        first = await asyncio.wait_for(channel.recv(), 10)
        assert isinstance(first, Error) and first.code is ErrorCode.NOT_FOUND
        assert await asyncio.wait_for(channel.recv(), 10) == ResultAck(assignment=99, iteration=1)
    else:
        await channel.send(StatusRequest(id=77))
        reply = await asyncio.wait_for(channel.recv(), 10)
        assert isinstance(reply, StatusReply) and reply.id == 77


async def test_a_reader_reads_but_may_not_submit_cancel_or_deploy(tmp_path: Path, start_server) -> None:
    d = deployment(tmp_path)

    server = await start_server(load_server_config(d.server_config))
    async with await AnalystClient.from_file(d.clients["bob"], server=("127.0.0.1", server.port)) as bob:
        assert isinstance(await bob.status(), StatusReply)
        with pytest.raises(RequestFailed, match="a reader may not send 'cancel'"):
            await bob.cancel(1)
        with pytest.raises(RequestFailed, match="a reader may not send 'submit'"):
            await bob.submit(AssignmentSpec(signals=["SPEED"], window=WindowSpec(amount=1)))
        with pytest.raises(RequestFailed, match="no assignment 1"):  # reads go through
            await bob.versions(1)


# --- TLS ---------------------------------------------------------------------------------------


async def test_a_plain_client_against_the_tls_server_fails_cleanly(tmp_path: Path, start_server) -> None:
    d = deployment(tmp_path)

    server = await start_server(load_server_config(d.server_config))
    started = time.monotonic()
    with pytest.raises(ChannelError):
        await connect("127.0.0.1", server.port, role=Role.VEHICLE, identity="car-1",
                      secret=secret_of(d, "car-1"), timeout=20)
    assert time.monotonic() - started < 15  # refused, not left to time out
    channel = await as_vehicle(server, d, "car-1")  # and the server still serves TLS
    await channel.close()


async def test_a_server_certificate_from_another_ca_is_refused_by_the_client(tmp_path: Path, start_server) -> None:
    d = deployment(tmp_path)
    other = init_deployment(tmp_path / "other", vehicles=["car-1"], hosts=HOSTS, port=free_port())

    server = await start_server(load_server_config(d.server_config))
    with pytest.raises(ChannelError, match="not trusted"):
        await connect("127.0.0.1", server.port, role=Role.VEHICLE, identity="car-1",
                      secret=secret_of(d, "car-1"), ssl_context=vehicle_context(other, "car-1"))


async def test_a_server_certificate_for_another_host_is_refused_by_the_client(tmp_path: Path, start_server) -> None:
    d = init_deployment(tmp_path / "d", vehicles=["car-1"], hosts=["fleet.example.com"], port=free_port(),
                        listen="127.0.0.1")

    server = await start_server(load_server_config(d.server_config))
    with pytest.raises(ChannelError, match="not trusted.*(match|mismatch)"):
        await connect("127.0.0.1", server.port, role=Role.VEHICLE, identity="car-1",
                      secret=secret_of(d, "car-1"), ssl_context=vehicle_context(d, "car-1"))


async def test_mutual_tls_vehicles_must_present_their_own_certificate(tmp_path: Path, start_server) -> None:
    d = deployment(tmp_path, vehicle_certificates=True)
    stranger_ca = make_ca("a stranger's CA")
    stranger = issue(stranger_ca, "car-1")
    stranger.write(tmp_path / "stranger.pem", tmp_path / "stranger.key")

    server = await start_server(load_server_config(d.server_config))
    channel = await as_vehicle(server, d, "car-1")  # its own certificate: in
    await channel.close()
    with pytest.raises(HandshakeRefused) as info:  # car-2's certificate, car-1's secret
        await as_vehicle(server, d, "car-1", context=vehicle_context(d, "car-1", cert_of="car-2"))
    assert info.value.reason == "the client certificate is for car-2, not vehicle car-1"
    with pytest.raises(HandshakeRefused) as info:  # no certificate at all
        await as_vehicle(server, d, "car-1", context=vehicle_context(d, "car-1"))
    assert "presented no client certificate" in info.value.reason
    context = client_context(ca=str(d.ca), cert=str(tmp_path / "stranger.pem"),
                             key=str(tmp_path / "stranger.key"))
    with pytest.raises(ChannelError) as failed:  # a certificate the server's CA did not sign
        await as_vehicle(server, d, "car-1", context=context)
    assert not isinstance(failed.value, HandshakeRefused)  # TLS itself said no
    # analysts need no certificate on the same port
    async with await AnalystClient.from_file(d.clients["alice"], server=("127.0.0.1", server.port)) as alice:
        assert isinstance(await alice.status(), StatusReply)


# --- configuration: plain TCP only on loopback, asked for explicitly ------------------------------


async def test_plain_tcp_is_refused_at_config_load_off_loopback(tmp_path: Path) -> None:
    server_toml = tmp_path / "server.toml"
    server_toml.write_text('[listen]\nhost = "0.0.0.0"\nplain = true\n')
    with pytest.raises(ConfigError, match="plain TCP is only allowed on a loopback address.*'0.0.0.0'"):
        load_server_config(server_toml)
    server_toml.write_text('[listen]\nhost = "127.0.0.1"\n')
    with pytest.raises(ConfigError, match="no \\[tls\\] section"):
        load_server_config(server_toml)
    server_toml.write_text('[listen]\nhost = "::1"\nplain = true\n')
    assert load_server_config(server_toml).listen.plain
    server_toml.write_text('[tls]\ncert = "missing.pem"\nkey = "missing.key"\n')
    with pytest.raises(ConfigError, match="cannot load the \\[tls\\] files .*missing.pem"):
        load_server_config(server_toml)

    (tmp_path / "secret").write_text("s" * 43)
    agent_toml = tmp_path / "agent.toml"
    agent_toml.write_text(
        'vehicle = "car-1"\n[server]\nhost = "fleet.example.com"\nsecret_file = "secret"\nplain = true\n'
        '[[sources]]\nkind = "gps"\nport = "/dev/null"\n'
    )
    with pytest.raises(AgentConfigError, match="plain TCP is only allowed on a loopback address"):
        load_agent_config(agent_toml)
    agent_toml.write_text(
        'vehicle = "car-1"\n[server]\nhost = "fleet.example.com"\nsecret_file = "missing"\n'
        '[[sources]]\nkind = "gps"\nport = "/dev/null"\n'
    )
    with pytest.raises(AgentConfigError, match="cannot read the secret file .*missing"):
        load_agent_config(agent_toml)
    agent_toml.write_text(
        'vehicle = "car-1"\n[server]\nsecret_file = "secret"\nplain = true\n'
        '[[sources]]\nkind = "gps"\nport = "/dev/null"\n'
    )
    (tmp_path / "secret").chmod(0o644)
    with pytest.raises(AgentConfigError, match="readable by every user .*chmod 600"):
        load_agent_config(agent_toml)
    (tmp_path / "secret").chmod(0o640)
    assert load_agent_config(agent_toml).server.secret() == "s" * 43

    cli = tmp_path / "alice.toml"
    cli.write_text('identity = "alice"\nrole = "analyst"\nsecret = "' + "s" * 43
                   + '"\nhost = "10.0.0.1"\nplain = true\n')
    cli.chmod(0o600)
    with pytest.raises(CredentialFileError, match="plain TCP is only allowed on a loopback address.*10.0.0.1"):
        load_client_credentials(cli)

    with pytest.raises(ChannelError, match="plain TCP is only allowed"):  # the dialer checks too
        await connect("192.0.2.1", 7400, role=Role.VEHICLE, identity="car-1", secret="s" * 43)


def test_a_credential_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    d = deployment(tmp_path)
    path = d.clients["alice"]
    assert load_client_credentials(path).identity == "alice"
    path.chmod(0o644)
    with pytest.raises(CredentialFileError, match="readable by others .*chmod 600"):
        load_client_credentials(path)


# --- the real processes ------------------------------------------------------------------------


async def test_server_and_agent_processes_over_mutual_tls_and_the_cli_with_a_credential_file(tmp_path: Path) -> None:
    """`oodida server` and `oodida agent` as processes, vehicles presenting their
    certificates, an assignment through, and the CLI as a reader: reads, no submit."""
    import os
    import subprocess
    import sys

    from oodida.testing import LocalFleet

    fleet = LocalFleet(tmp_path, vehicles=2, speed=4.0, loop=True, signals=["SPEED"], vehicle_certificates=True)

    with fleet:
        fleet.start()
        client = await fleet.client()
        try:
            await fleet.wait_connected(client)
            spec = AssignmentSpec(signals=["SPEED"], window=WindowSpec(amount=1.0, kind="latest"), iterations=2,
                                  on_board=["count"], deadline=20)
            submitted = await client.submit(spec)
            reports = [r async for r in client.results(submitted.assignment, follow=True)]
            assert reports[-1].state == "done"  # type: ignore[union-attr]
            assert all(set(r.vehicles) == {"car-1", "car-2"} for r in reports[:-1])  # type: ignore[union-attr]
            assignment = submitted.assignment
        finally:
            await client.close()
        assert "(TLS)" in (tmp_path / "server.log").read_text()
        env = {**os.environ, "OODIDA_CREDENTIALS": str(fleet.reader_credentials),
               "OODIDA_SERVER": f"127.0.0.1:{fleet.port}"}
        read = await asyncio.to_thread(subprocess.run,
                                       [sys.executable, "-m", "oodida", "results", str(assignment), "--json"],
                                       capture_output=True, text=True, env=env, timeout=60)
        assert read.returncode == 0, read.stderr
        submit = await asyncio.to_thread(subprocess.run,
                                         [sys.executable, "-m", "oodida", "submit", "--signals", "SPEED",
                                          "--window", "1s"],
                                         capture_output=True, text=True, env=env, timeout=60)
        assert submit.returncode == 1 and "a reader may not send 'submit'" in submit.stderr, submit.stderr


# --- revocation ends live sessions ----------------------------------------------------------------


async def test_revoking_a_credential_ends_its_live_sessions_with_the_reason(tmp_path: Path, start_server) -> None:
    config = msgspec_replace(plain_config(tmp_path, vehicles=("car-1", "car-2"), analysts=("alice",)),
                             credential_check=0.2)

    server = await start_server(config)
    car1, _ = await connect("127.0.0.1", server.port, role=Role.VEHICLE, identity="car-1",
                            secret=VEHICLE_SECRET)
    car2, _ = await connect("127.0.0.1", server.port, role=Role.VEHICLE, identity="car-2",
                            secret=VEHICLE_SECRET)
    alice, _ = await connect("127.0.0.1", server.port, role=Role.ANALYST, identity="alice",
                             secret=ANALYST_SECRET)
    store = Credentials(config.database)  # as `oodida credentials revoke` does, from outside
    store.revoke("car-1")
    store.revoke("alice")
    store.close()
    for channel, who in ((car1, "car-1"), (alice, "alice")):
        error = await asyncio.wait_for(channel.recv(), 20)
        assert isinstance(error, Error) and error.code is ErrorCode.AUTH
        assert error.reason.startswith(f"credential of {who} was revoked at")
        with pytest.raises(ChannelError):
            await asyncio.wait_for(channel.recv(), 20)
    await still_served(car2, Role.VEHICLE, "car-2")  # the others go on
    forged = Result(assignment=99, iteration=1, vehicle="car-1", ok=True, code_hash="h", value=1)
    await car2.send(forged)  # and a vehicle speaks for itself only
    error = await asyncio.wait_for(car2.recv(), 10)
    assert isinstance(error, Error) and error.reason == "vehicle car-2 may not send results of car-1"
    with pytest.raises(HandshakeRefused, match="revoked"):
        await connect("127.0.0.1", server.port, role=Role.VEHICLE, identity="car-1", secret=VEHICLE_SECRET)
    for channel in (car1, car2, alice):
        await channel.close()


def msgspec_replace(config: object, **changes: object) -> object:
    import msgspec

    return msgspec.structs.replace(config, **changes)  # type: ignore[type-var]
