"""Who may connect, as what: one credential per identity, stored hashed.

A credential is an identity, a role (`vehicle`, `analyst` or `reader`), an optional
expiry, and the SCRAM-SHA-256 keys derived from a 256-bit random secret (salt,
iterations, StoredKey, ServerKey: `wire.scram`). The secret itself is shown once, when
the credential is made, and never stored: a copy of the database lets nobody connect.

The table lives in the server's database file beside the store's tables but is owned
here, through its own connection, so the assignment store knows nothing of it. A
revoked credential stays as a row (revoked_at set) so that a refused peer is told
"revoked", not "unknown", and an operator can see when it happened.
"""

from __future__ import annotations

import datetime
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec

from oodida.core.errors import OodidaError
from oodida.wire import scram
from oodida.wire.messages import Identity, Role

SCHEMA = """
CREATE TABLE IF NOT EXISTS credentials (
    identity    TEXT PRIMARY KEY,
    role        TEXT NOT NULL,
    salt        BLOB NOT NULL,
    iterations  INTEGER NOT NULL,
    stored_key  BLOB NOT NULL,
    server_key  BLOB NOT NULL,
    created     REAL NOT NULL,
    expires     REAL,
    revoked_at  REAL
);
"""


class CredentialError(OodidaError, ValueError):
    """A credential cannot be added, revoked or found; the message says why."""


def iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat(timespec="seconds")


def check_identity(identity: str) -> None:
    try:
        msgspec.convert(identity, Identity)
    except msgspec.ValidationError:
        raise CredentialError(
            f"{identity!r} is not a valid identity: 1-64 letters, digits and ._:@- , starting with a letter or digit"
        ) from None


@dataclass(frozen=True)
class Credential:
    identity: str
    role: Role
    stored: scram.StoredCredential
    created: float
    expires: float | None
    revoked_at: float | None

    def problem(self, role: Role, now: float | None = None) -> str | None:
        """Why this credential does not admit a peer of `role` now, or None."""
        now = time.time() if now is None else now
        if self.revoked_at is not None:
            return f"credential of {self.identity} was revoked at {iso(self.revoked_at)}"
        if self.expires is not None and now >= self.expires:
            return f"credential of {self.identity} expired at {iso(self.expires)}"
        if self.role is not role:
            return f"credential of {self.identity} is for role {self.role.value}, not {role.value}"
        return None


class Credentials:
    """The `credentials` table of one database file."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        if self.path != ":memory:":
            self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def get(self, identity: str) -> Credential | None:
        """One indexed read; the server does this once per handshake."""
        row = self.db.execute(
            "SELECT identity, role, salt, iterations, stored_key, server_key, created, expires, revoked_at"
            " FROM credentials WHERE identity = ?",
            (identity,),
        ).fetchone()
        if row is None:
            return None
        return Credential(
            identity=row[0],
            role=Role(row[1]),
            stored=scram.StoredCredential(salt=row[2], iterations=row[3], stored_key=row[4], server_key=row[5]),
            created=row[6],
            expires=row[7],
            revoked_at=row[8],
        )

    def add(
        self,
        identity: str,
        role: Role,
        *,
        secret: str | None = None,
        expires: float | None = None,
        replace: bool = False,
        iterations: int = scram.DEFAULT_ITERATIONS,
    ) -> str:
        """Make a credential and return its secret (a fresh one unless given): the
        only time anyone sees it. An identity holds one credential; `replace` rotates
        it (the old secret stops working at once)."""
        check_identity(identity)
        if iterations < scram.MIN_ITERATIONS:
            raise CredentialError(f"at least {scram.MIN_ITERATIONS} iterations (RFC 7677)")
        existing = self.get(identity)
        if existing is not None and existing.revoked_at is None and not replace:
            raise CredentialError(
                f"{identity} already has a {existing.role.value} credential; revoke it first, or replace it"
            )
        secret = scram.new_secret() if secret is None else secret
        stored = scram.derive(secret, iterations=iterations)
        self.db.execute(
            "INSERT OR REPLACE INTO credentials"
            " (identity, role, salt, iterations, stored_key, server_key, created, expires, revoked_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)",
            (identity, role.value, stored.salt, stored.iterations, stored.stored_key, stored.server_key,
             time.time(), expires),
        )
        return secret

    def add_simulated(self, identities: list[str], role: Role, secret: str,
                      iterations: int = scram.DEFAULT_ITERATIONS) -> None:
        """Credentials for a simulated fleet (benchmarks, load tests): every identity
        gets the same secret *and salt*, derived once, in one transaction, so
        10,000 vehicles cost one PBKDF2 here and one in the client process (its cache
        is keyed by secret, salt and iterations). Never for real vehicles: one leaked
        secret would open them all."""
        for identity in identities:
            check_identity(identity)
        stored = scram.derive(secret, iterations=iterations)
        now = time.time()
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT OR REPLACE INTO credentials"
                " (identity, role, salt, iterations, stored_key, server_key, created, expires, revoked_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
                [(i, role.value, stored.salt, stored.iterations, stored.stored_key, stored.server_key, now)
                 for i in identities],
            )

    def revoke(self, identity: str) -> None:
        """From now on, handshakes as `identity` are refused ("revoked")."""
        existing = self.get(identity)
        if existing is None:
            raise CredentialError(f"no credential for {identity!r}")
        if existing.revoked_at is not None:
            raise CredentialError(f"the credential of {identity} was already revoked at {iso(existing.revoked_at)}")
        self.db.execute("UPDATE credentials SET revoked_at = ? WHERE identity = ?", (time.time(), identity))

    def withdrawn_between(self, start: float, end: float) -> list[tuple[str, str]]:
        """(identity, reason) of credentials revoked, or expired, in [start, end)."""
        rows = self.db.execute(
            "SELECT identity, revoked_at, expires FROM credentials"
            " WHERE (revoked_at >= ? AND revoked_at < ?) OR (expires >= ? AND expires < ?)",
            (start, end, start, end),
        ).fetchall()
        return [
            (identity, f"credential of {identity} was revoked at {iso(revoked)}; session ended" if revoked is not None
             else f"credential of {identity} expired at {iso(expires)}; session ended")
            for identity, revoked, expires in rows
        ]

    def list(self) -> list[Credential]:
        return [
            c
            for (identity,) in self.db.execute("SELECT identity FROM credentials ORDER BY role, identity")
            if (c := self.get(identity)) is not None
        ]
