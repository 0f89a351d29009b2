"""Signed modules through the server, over real loopback sockets with a hand-played
vehicle: the signature and key id the analyst sent go with every `LoadModule` (at
submit, deploy, reconnect and rollback), are stored per deploy and shown by
`versions`; a module signed by a key the server knows must verify, or the submit or
deploy is refused with the reason and nothing changes. The server requires nothing:
unknown keys and unsigned modules pass through (the vehicles decide)."""

from __future__ import annotations

import asyncio
import sqlite3

import msgspec
import pytest

from oodida.client.protocol import AnalystClient, RequestFailed
from oodida.commands.deploy import render_versions
from oodida.core.signing import generate_key, load_signing_key
from oodida.link import ChannelError, connect
from oodida.sandbox.supervisor import source_hash
from oodida.server.config import (
    ConfigError,
    Signing,
    load_server_config,
)
from oodida.wire import Role
from oodida.wire.messages import (
    AssignmentSpec,
    DeployEnd,
    LoadModule,
    ModuleAck,
    ModuleSource,
    WindowSpec,
)
from tests.credentials import plain_config
from tests.servers import AT, OPEN, STATUS, VT, Started


def module(version: int) -> ModuleSource:
    return ModuleSource(name=f"v{version}.py", source=f"def on_board(window, params, state):\n    return {version}\n")


class Vehicle:
    """A vehicle that acknowledges every module it is sent and keeps them in order."""

    def __init__(self) -> None:
        self.loads: asyncio.Queue[LoadModule] = asyncio.Queue()
        self.channel = None
        self.reader: asyncio.Task | None = None

    async def connect(self, port: int) -> None:
        self.channel, _ = await connect("127.0.0.1", port, role=Role.VEHICLE, identity="v1", secret=VT)
        OPEN.append(self.channel)
        await self.channel.send(STATUS)
        self.reader = asyncio.create_task(self._read(self.channel))

    async def _read(self, channel) -> None:
        try:
            while True:
                message = await channel.recv()
                if isinstance(message, LoadModule):
                    self.loads.put_nowait(message)
                    await channel.send(ModuleAck(assignment=message.assignment, code_hash=message.code_hash, ok=True))
        except ChannelError:  # the server stopped
            pass

    async def disconnect(self) -> None:
        self.reader.cancel()
        await self.channel.close()

    async def next_load(self) -> LoadModule:
        return await asyncio.wait_for(self.loads.get(), 10)


@pytest.mark.timeout(60)
async def test_signatures_travel_with_every_load_and_a_known_key_must_verify(tmp_path):
    for name in ("alice", "carol"):
        generate_key(tmp_path / name)
    alice, carol = load_signing_key(tmp_path / "alice"), load_signing_key(tmp_path / "carol")
    config = plain_config(tmp_path, signing=Signing(known_keys=[str(tmp_path / "carol.pub")]))
    v1, v2 = alice.sign(module(1), "on_board"), alice.sign(module(2), "on_board")
    bad = msgspec.structs.replace(carol.sign(module(3), "on_board"), source=module(4).source)

    server = Started(config)
    await server.start()
    car = Vehicle()
    try:
        await car.connect(server.port)
        analyst = await AnalystClient.connect("127.0.0.1", server.port, AT, identity="analyst")
        spec = AssignmentSpec(signals=["SPEED"], window=WindowSpec(amount=1), iterations=0, deadline=600,
                              on_board_module=bad)
        with pytest.raises(RequestFailed, match=f"signature by key {carol.key_id} does not verify"):
            await analyst.submit(spec)  # a key the server knows: refused here, before any vehicle sees it
        a = (await analyst.submit(msgspec.structs.replace(spec, on_board_module=v1))).assignment
        assert (await car.next_load()).module == v1  # alice is not known to the server: passed on, signed

        async def deploy(**fields) -> DeployEnd:
            events = [e async for e in analyst.deploy(assignment=a, side="on_board", timeout=10, **fields)]
            return events[-1]

        assert (await deploy(module=v2)).acked == ["v1"]
        assert (await car.next_load()).module == v2
        with pytest.raises(RequestFailed, match="does not verify.*the running version stays"):
            await deploy(module=bad)
        short = msgspec.structs.replace(v2, signature=v2.signature[:63])  # malformed: refused as it arrives
        with pytest.raises(RequestFailed, match=r"Expected `bytes` of length >= 64 - at `\$.module.signature`"):
            await deploy(module=short)
        unsigned = module(5)
        assert (await deploy(module=unsigned)).acked == ["v1"]  # the server requires nothing
        assert (await car.next_load()).module == unsigned
        assert (await deploy(module=v2)).acked == ["v1"]  # the same content, signed again
        assert (await car.next_load()).module == v2

        await car.disconnect()  # a vehicle that reconnects gets its version with the signature
        await car.connect(server.port)
        assert (await car.next_load()).module == v2

        end = [e async for e in analyst.deploy(assignment=a, side="on_board", code_hash=source_hash(v1.source)[:8],
                                               timeout=10)][-1]
        assert end.acked == ["v1"]
        assert (await car.next_load()).module == v1  # a rollback sends the signature stored with the version

        versions = (await analyst.versions(a)).versions
        assert [(v.kind, v.code_hash, v.signer) for v in versions] == [
            ("submit", source_hash(v1.source), alice.key_id),
            ("deploy", source_hash(v2.source), alice.key_id),
            ("deploy", source_hash(unsigned.source), None),
            ("deploy", source_hash(v2.source), alice.key_id),
            ("rollback", source_hash(v1.source), alice.key_id),
        ]
        text = render_versions(await analyst.versions(a))
        assert text.count(alice.key_id) == 4 and "unsigned" in text
        await analyst.close()
    finally:
        await server.stop()
    db = sqlite3.connect(config.database)
    audit = [r[0] for r in db.execute("SELECT detail FROM audit WHERE action = 'deploy refused'")]
    assert len(audit) == 1 and "does not verify" in audit[0]
    assert db.execute("SELECT COUNT(*) FROM deployment_signatures").fetchone()[0] == 4
    db.close()


def test_server_known_keys_are_relative_to_its_config_and_a_bad_one_is_a_config_error(tmp_path):
    generate_key(tmp_path / "carol")
    path = tmp_path / "server.toml"
    head = '[listen]\nplain = true\n[signing]\n'
    path.write_text(head + 'known_keys = ["carol.pub"]\n')
    assert load_server_config(path).signing.known_keys == [str(tmp_path / "carol.pub")]
    path.write_text(head + 'known_keys = ["dave.pub"]\n')
    with pytest.raises(ConfigError, match=r"\[signing\] known_keys: cannot read public key .*dave.pub"):
        load_server_config(path)
    path.write_text(head + 'require = true\n')
    with pytest.raises(ConfigError, match="unknown field `require`"):
        load_server_config(path)


def test_the_store_keeps_a_signature_per_deploy_and_gives_back_the_latest_for_a_side(tmp_path):
    from oodida.server.store import Store

    for name in ("alice", "bob"):
        generate_key(tmp_path / name)
    alice, bob = load_signing_key(tmp_path / "alice"), load_signing_key(tmp_path / "bob")
    store = Store(tmp_path / "s.sqlite3")
    try:
        m = module(1)
        h = source_hash(m.source)
        spec = AssignmentSpec(signals=["SPEED"], window=WindowSpec(amount=1), on_board_module=m)
        a = store.create_assignment(spec, ["v1"])
        store.add_module(h, m.name, m.source)
        signed = {}
        for key, side in ((alice, "on_board"), (None, "on_board"), (bob, "on_board"), (alice, "off_board")):
            sent = m if key is None else key.sign(m, side)
            d = store.add_signed_deployment(a, side, h, "deploy", "ana", None, sent)
            if key is not None:
                signed[d] = sent
        # a deploy whose signature cannot be stored is not stored either: the next deploy's
        # signature row is taken in advance (foreign keys off for that), so its insert fails
        store.db.execute("PRAGMA foreign_keys=OFF")
        store.db.execute("INSERT INTO deployment_signatures VALUES (5, 'taken', x'00')")
        store.db.execute("PRAGMA foreign_keys=ON")
        with pytest.raises(sqlite3.IntegrityError):
            store.add_signed_deployment(a, "on_board", h, "deploy", "ana", None, alice.sign(m, "on_board"))
        assert [d.id for d in store.deployments(a)] == [1, 2, 3, 4]
        store.db.execute("DELETE FROM deployment_signatures WHERE deployment = 5")
        assert store.signed_module(h, "on_board") == signed[3]  # the latest signed deploy to that side: bob's
        assert store.signed_module(h, "off_board") == signed[4]
        assert store.deployment_signers(a) == {1: alice.key_id, 3: bob.key_id, 4: alice.key_id}
        assert store.signed_module("f" * 64, "on_board") is None
        h2 = source_hash(module(2).source)
        store.add_module(h2, "v2.py", module(2).source)
        assert store.signed_module(h2, "on_board") == module(2)  # never signed: sent unsigned
    finally:
        store.close()



def test_one_file_for_both_sides_goes_to_the_vehicles_with_its_on_board_signature(tmp_path):
    from oodida.core.signing import Trust, sign_spec
    from oodida.server.versions import AssignmentVersions

    generate_key(tmp_path / "alice")
    alice = load_signing_key(tmp_path / "alice")
    trust = Trust.from_files([tmp_path / "alice.pub"], require=True)
    both = ModuleSource(name="speeding.py",
                        source=module(1).source + "def off_board(results, params, state):\n    return 1\n")
    spec = sign_spec(alice, AssignmentSpec(signals=["SPEED"], window=WindowSpec(amount=1), on_board_module=both,
                                           off_board_module=both))
    h = source_hash(both.source)
    v = AssignmentVersions(["a"])
    v.deploy_on_board(h, spec.on_board_module, None)  # as the runner does at submit: on board first ...
    v.deploy_off_board(h, spec.off_board_module, initial=True)  # ... then the same hash off board
    sent = v.load_message(1, "a").module
    assert sent == spec.on_board_module and trust.problem(sent, "on_board") is None
    assert trust.problem(v.sources[h], "off_board") is None
