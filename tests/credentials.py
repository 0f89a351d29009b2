"""Credentials for tests that run a server in-process: plain TCP on loopback (the
only place it is allowed) and known secrets, hashed into the test's database by the
server's own credentials code. TLS itself is tested in tests/integration/test_security.py
and by every LocalFleet (TLS by default)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from oodida.server.config import Listen, ServerConfig
from oodida.server.credentials import Credentials
from oodida.wire.messages import Role

VEHICLE_SECRET = "vehicle-secret-for-tests"
ANALYST_SECRET = "analyst-secret-for-tests"
READER_SECRET = "reader-secret-for-tests"
SECRETS = {Role.VEHICLE: VEHICLE_SECRET, Role.ANALYST: ANALYST_SECRET, Role.READER: READER_SECRET}


def grant(database: str | Path, roles: dict[str, Role]) -> None:
    """Give every identity in `roles` a credential with its role's test secret."""
    store = Credentials(database)
    try:
        for identity, role in roles.items():
            store.add(identity, role, secret=SECRETS[role], replace=True)
    finally:
        store.close()


def plain_config(
    tmp_path: Path,
    *,
    vehicles: tuple[str, ...] = ("v1", "v2", "v3"),
    analysts: tuple[str, ...] = ("analyst",),
    readers: tuple[str, ...] = ("reader",),
    database: str = "server.sqlite3",
    **options: Any,
) -> ServerConfig:
    """A server config on a free loopback port, plain TCP, with those credentials."""
    path = str(tmp_path / database)
    roles = {v: Role.VEHICLE for v in vehicles} | {a: Role.ANALYST for a in analysts}
    grant(path, roles | {r: Role.READER for r in readers})
    return ServerConfig(listen=Listen(host="127.0.0.1", port=0, plain=True), database=path, **options)


def secret_file(tmp_path: Path, secret: str = VEHICLE_SECRET) -> str:
    """A vehicle's secret file, for ServerLink(secret_file=...)."""
    path = tmp_path / "vehicle.secret"
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return str(path)
