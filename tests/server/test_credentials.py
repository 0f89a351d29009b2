"""The credentials table: add, rotate, revoke, expire; stored hashed, never in clear."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from oodida.server.credentials import CredentialError, Credentials
from oodida.server.init import InitError, init_deployment
from oodida.wire import scram
from oodida.wire.messages import Role


def test_add_returns_a_fresh_256_bit_secret_that_proves_the_stored_credential(tmp_path: Path) -> None:
    store = Credentials(tmp_path / "db.sqlite3")
    secret = store.add("car-1", Role.VEHICLE)
    other = store.add("car-2", Role.VEHICLE)
    assert secret != other and len(secret) >= 43
    credential = store.get("car-1")
    assert credential is not None and credential.role is Role.VEHICLE
    assert credential.problem(Role.VEHICLE) is None
    message = b"any auth message"
    proof, expected = scram.client_proof(secret, credential.stored.salt, credential.stored.iterations, message)
    assert scram.verify_proof(credential.stored, message, proof) == expected
    wrong, _ = scram.client_proof(other, credential.stored.salt, credential.stored.iterations, message)
    assert scram.verify_proof(credential.stored, message, wrong) is None
    store.close()


def test_the_database_holds_no_secret_in_clear(tmp_path: Path) -> None:
    store = Credentials(tmp_path / "db.sqlite3")
    secrets = [store.add(f"car-{i}", Role.VEHICLE) for i in range(20)]
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())  # the file, its WAL and shm
    assert b"car-7" in raw  # identities are there: the grep does see the file's contents
    for secret in secrets:
        assert secret.encode() not in raw


def test_one_credential_per_identity_until_revoked_or_replaced(tmp_path: Path) -> None:
    store = Credentials(tmp_path / "db.sqlite3")
    old = store.add("alice", Role.ANALYST)
    with pytest.raises(CredentialError, match="alice already has a analyst credential"):
        store.add("alice", Role.READER)
    new = store.add("alice", Role.READER, replace=True)
    credential = store.get("alice")
    assert credential is not None and credential.role is Role.READER and old != new
    store.revoke("alice")
    credential = store.get("alice")
    assert credential is not None and credential.problem(Role.READER) is not None
    assert "credential of alice was revoked at" in (credential.problem(Role.READER) or "")
    with pytest.raises(CredentialError, match="already revoked"):
        store.revoke("alice")
    with pytest.raises(CredentialError, match="no credential for 'nobody'"):
        store.revoke("nobody")
    store.add("alice", Role.ANALYST)  # a revoked identity may get a new credential
    assert store.get("alice").revoked_at is None  # type: ignore[union-attr]
    store.close()


def test_problems_say_expired_and_wrong_role(tmp_path: Path) -> None:
    store = Credentials(tmp_path / "db.sqlite3")
    store.add("car-1", Role.VEHICLE, expires=1_700_000_000.0)
    credential = store.get("car-1")
    assert credential is not None
    assert credential.problem(Role.VEHICLE) == "credential of car-1 expired at 2023-11-14T22:13:20+00:00"
    assert credential.problem(Role.VEHICLE, now=1_600_000_000.0) is None
    assert credential.problem(Role.ANALYST, now=1_600_000_000.0) == (
        "credential of car-1 is for role vehicle, not analyst"
    )
    store.close()


@pytest.mark.parametrize("identity", ["", "../etc", "a" * 65, "car 1", "-car"])
def test_bad_identities_are_refused_with_the_rule(tmp_path: Path, identity: str) -> None:
    store = Credentials(tmp_path / "db.sqlite3")
    with pytest.raises(CredentialError, match="not a valid identity"):
        store.add(identity, Role.VEHICLE)
    store.close()


def test_init_writes_private_files_and_refuses_to_overwrite(tmp_path: Path) -> None:
    d = init_deployment(tmp_path / "d", vehicles=["car-1"], analysts=["alice"], readers=["bob"])
    for private in [d.root / "ca.key", d.root / "server" / "server.key", d.vehicles["car-1"] / "secret",
                    d.vehicles["car-1"] / "key.pem", d.clients["alice"], d.clients["bob"]]:
        assert private.stat().st_mode & 0o777 == 0o600, private
    store = Credentials(d.database)
    assert {(c.identity, c.role) for c in store.list()} == {
        ("car-1", Role.VEHICLE), ("alice", Role.ANALYST), ("bob", Role.READER)
    }
    store.close()
    secret = (d.vehicles["car-1"] / "secret").read_text().strip()
    assert secret.encode() not in b"".join(p.read_bytes() for p in d.database.parent.glob("*.sqlite3*"))
    before = sorted(p.name for p in d.root.rglob("*"))
    with pytest.raises(InitError, match="not empty; refusing to overwrite"):
        init_deployment(d.root, vehicles=["car-9"])
    assert sorted(p.name for p in d.root.rglob("*")) == before


def test_init_refuses_duplicate_and_invalid_names_before_writing(tmp_path: Path) -> None:
    with pytest.raises(InitError, match="named twice"):
        init_deployment(tmp_path / "a", vehicles=["x"], analysts=["x"])
    with pytest.raises(CredentialError, match="not a valid identity"):
        init_deployment(tmp_path / "b", vehicles=["ok", "not ok"])
    with pytest.raises(InitError, match="plain TCP is only allowed on loopback"):
        init_deployment(tmp_path / "c", hosts=["fleet.example.com"], plain=True)
    assert not any((tmp_path / n).exists() for n in "abc")


def oodida(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OODIDA_")}
    return subprocess.run([sys.executable, "-m", "oodida", *args], capture_output=True, text=True, env=env, timeout=60)


def test_credentials_command_adds_prints_once_lists_and_revokes(tmp_path: Path) -> None:
    out = oodida("init", str(tmp_path / "d"), "--vehicles", "car-1", "--analysts", "alice")
    assert out.returncode == 0, out.stderr
    config = str(tmp_path / "d" / "server" / "server.toml")
    added = oodida("credentials", "add", "car-2", "--role", "vehicle", "--config", config, "--expires", "2099-01-01")
    assert added.returncode == 0, added.stderr
    secret = added.stdout.strip()
    assert len(secret) >= 43 and "shown once" in added.stderr
    listed = oodida("credentials", "list", "--config", config)
    assert listed.returncode == 0, listed.stderr
    assert "car-2" in listed.stdout and "expires 2099-01-01" in listed.stdout and secret not in listed.stdout
    again = oodida("credentials", "add", "car-2", "--role", "vehicle", "--config", config)
    assert again.returncode == 1 and "already has a vehicle credential" in again.stderr
    revoked = oodida("credentials", "revoke", "car-2", "--config", config)
    assert revoked.returncode == 0, revoked.stderr
    listed = oodida("credentials", "list", "--config", config, "--json")
    assert '"revoked": "' in [line for line in listed.stdout.splitlines() if "car-2" in line][0]
    reinit = oodida("init", str(tmp_path / "d"), "--vehicles", "car-1")
    assert reinit.returncode == 1 and "refusing to overwrite" in reinit.stderr


def test_a_simulated_fleet_is_granted_in_one_derivation(tmp_path: Path) -> None:
    store = Credentials(tmp_path / "db.sqlite3")
    vehicles = [f"sim-{i}" for i in range(5000)]
    store.add_simulated(vehicles, Role.VEHICLE, "one-secret-for-the-simulation")
    first, last = store.get("sim-0"), store.get("sim-4999")
    assert first is not None and last is not None and first.stored == last.stored
    message = b"auth message"
    proof, _ = scram.client_proof("one-secret-for-the-simulation", last.stored.salt, last.stored.iterations, message)
    assert scram.verify_proof(last.stored, message, proof) is not None
    assert len(store.list()) == 5000
    store.close()


def test_withdrawn_between_names_revocations_and_expiries_in_the_window(tmp_path: Path) -> None:
    store = Credentials(tmp_path / "db.sqlite3")
    store.add("soon", Role.VEHICLE, expires=2_000.0)
    store.add("later", Role.VEHICLE, expires=9_000.0)
    store.add("kept", Role.ANALYST)
    assert store.withdrawn_between(1_000.0, 3_000.0) == [
        ("soon", "credential of soon expired at 1970-01-01T00:33:20+00:00; session ended")
    ]
    assert store.withdrawn_between(3_000.0, 4_000.0) == []
    store.revoke("kept")
    revoked = store.withdrawn_between(0.0, 1e12)
    assert {identity for identity, _ in revoked} == {"soon", "later", "kept"}
    assert [r for i, r in revoked if i == "kept"][0].startswith("credential of kept was revoked at")
    store.close()


async def test_credentials_add_writes_a_vehicle_folder_and_an_analyst_file_that_connect(tmp_path: Path) -> None:
    import asyncio

    from oodida.client.protocol import AnalystClient
    from oodida.link import connect
    from oodida.link.tls import client_context
    from oodida.server.app import Server
    from oodida.server.config import load_server_config

    d = init_deployment(tmp_path / "d", vehicles=["car-1"], hosts=["127.0.0.1"], port=47_123)
    config = str(d.server_config)
    refused = oodida("credentials", "add", "car-2", "--role", "vehicle", "--config", config,
                     "--write", str(tmp_path / "car-2"), "--ca", str(d.ca))
    assert refused.returncode == 1 and "--ca-key" in refused.stderr and not (tmp_path / "car-2").exists()
    assert "car-2" not in oodida("credentials", "list", "--config", config).stdout  # nothing stored either
    added = oodida("credentials", "add", "car-2", "--role", "vehicle", "--config", config,
                   "--write", str(tmp_path / "car-2"), "--ca", str(d.ca), "--ca-key", str(d.root / "ca.key"))
    assert added.returncode == 0, added.stderr
    added = oodida("credentials", "add", "carol", "--role", "reader", "--config", config,
                   "--write", str(tmp_path / "carol.toml"), "--ca", str(d.ca))
    assert added.returncode == 0, added.stderr
    folder = tmp_path / "car-2"
    assert "vehicle_certificates" not in (folder / "agent.toml").read_text()

    server = Server(load_server_config(d.server_config))
    await server.start()
    try:
        context = client_context(ca=str(folder / "ca.pem"), cert=str(folder / "cert.pem"),
                                 key=str(folder / "key.pem"))
        channel, _ = await connect("127.0.0.1", server.port, role=Role.VEHICLE, identity="car-2",
                                   secret=(folder / "secret").read_text().strip(), ssl_context=context)
        await channel.close()
        async with await AnalystClient.from_file(tmp_path / "carol.toml", server=("127.0.0.1", server.port)) as c:
            await asyncio.wait_for(c.status(), 10)
    finally:
        await server.stop()
