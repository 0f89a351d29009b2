"""The server's configuration: one TOML file, decoded into typed objects.

Unknown keys are an error (a typo must not silently fall back to a default), and
relative paths are taken relative to the file, so a config works from any directory.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from oodida.core.errors import OodidaError
from oodida.core.metrics import Metrics
from oodida.link.tls import plain_problem, server_context


class ConfigError(OodidaError, ValueError):
    """The configuration file is missing, malformed, or names impossible values."""


class Listen(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535)] = 7400
    plain: bool = False  # plain TCP instead of TLS: loopback hosts only, for tests and laptops


class Tls(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The server's certificate and key (PEM files), and optionally the CA whose
    certificates vehicles present. With `vehicle_certificates`, a vehicle must present
    one naming it (subject CN or DNS SAN) as well as prove its credential; analysts
    never need one (one port serves both; the handshake decides)."""

    cert: str
    key: str
    client_ca: str | None = None
    vehicle_certificates: bool = False

    def __post_init__(self) -> None:
        if self.vehicle_certificates and self.client_ca is None:
            raise ValueError(
                "vehicle_certificates = true needs client_ca, the CA that signs the vehicles' certificates"
            )


class Sandbox(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Limits for analysts' off-board modules."""

    call_timeout: Annotated[float, Meta(gt=0, le=3600)] = 30.0
    memory_mb: Annotated[int, Meta(ge=128, le=1 << 20)] = 2048
    uid: Annotated[int, Meta(ge=1)] = 65534
    max_workers: Annotated[int, Meta(ge=1, le=1024)] = 16  # off-board workers, one per assignment


class Signing(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Analysts' public keys the server knows (files relative to this file). A module
    signed by one of them must verify, else the submit or deploy is refused at once
    rather than by every vehicle. The server never requires signatures and has no say
    over which keys the vehicles trust: that is each agent's `[signing]`."""

    known_keys: Annotated[list[str], Meta(max_length=1024)] = msgspec.field(default_factory=list)


class Limits(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """What one peer, or a flood of them, may cost the server. The defaults suit a
    fleet of 10,000 vehicles (each holds one connection) plus its analysts.

    A peer over a limit gets an `Error` that says which limit, and the connection is
    closed (or, for requests, the request is refused); the reason is logged."""

    max_connections: Annotated[int, Meta(ge=1, le=1_000_000)] = 16_384
    # connections that have not completed the handshake yet, at any moment
    max_handshakes: Annotated[int, Meta(ge=1, le=1_000_000)] = 1024
    # seconds a send may wait for a peer that does not read before it is dropped
    send_timeout: Annotated[float, Meta(gt=0, le=3600)] = 30.0
    # requests of one analyst connection being answered at once (a followed results
    # stream counts until it ends)
    max_requests: Annotated[int, Meta(ge=1, le=100_000)] = 64
    # seconds of silence before TCP keepalive probes a peer; one that vanished without
    # closing (power or coverage lost) is dropped about twice this long after
    keepalive: Annotated[float, Meta(ge=1, le=7200)] = 60.0


class ServerConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Who may connect is not configured here: credentials are rows of the database
    (`oodida init`, `oodida credentials`), so adding a vehicle needs no restart."""

    tls: Tls | None = None
    sandbox: Sandbox = Sandbox()
    signing: Signing = Signing()
    listen: Listen = Listen()
    database: str = "oodida-server.sqlite3"
    name: Annotated[str, Meta(max_length=64)] = "oodida"
    max_frame: Annotated[int, Meta(ge=1024, le=1 << 30)] = 16 * 1024 * 1024
    handshake_timeout: Annotated[float, Meta(gt=0, le=600)] = 10.0
    credential_check: Annotated[float, Meta(gt=0, le=3600)] = 5.0  # s between looks for revoked credentials
    # a vehicle id connecting while a live connection holds it: "refuse" the newcomer
    # (two agents configured with one id), or "takeover" (the newest connection wins)
    duplicate_vehicle: Literal["refuse", "takeover"] = "refuse"
    # before opening the database: "quick" reads every page (PRAGMA quick_check, about
    # 25 ms per MB from a cold disk here, bench/db_check.py); "header" only its header,
    # length and permissions, for databases too large to read at every start
    database_check: Literal["quick", "header"] = "quick"

    def __post_init__(self) -> None:
        if self.listen.plain:
            if self.tls is not None:
                raise ValueError("[listen] plain = true and a [tls] section: choose one")
            problem = plain_problem(self.listen.host)
            if problem is not None:
                raise ValueError(f"[listen] {problem}")
        elif self.tls is None:
            raise ValueError(
                "no [tls] section: give the server's cert and key (oodida init writes them), "
                "or set [listen] plain = true on a loopback host"
            )
    limits: Limits = Limits()
    metrics: Metrics | None = None  # None: no metrics endpoint


def load_server_config(path: str | Path) -> ServerConfig:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read server config {path}: {exc.strerror}") from None
    try:
        config = msgspec.toml.decode(raw, type=ServerConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    database = config.database
    if database != ":memory:" and not Path(database).is_absolute():
        database = str((path.parent / database).resolve())
    tls = config.tls
    if tls is not None:
        tls = msgspec.structs.replace(
            tls,
            cert=_resolve(path.parent, tls.cert),
            key=_resolve(path.parent, tls.key),
            client_ca=None if tls.client_ca is None else _resolve(path.parent, tls.client_ca),
        )
        try:  # a missing or mismatched file fails here, with its name, not at the first connection
            server_context(cert=tls.cert, key=tls.key, client_ca=tls.client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"{path}: cannot load the [tls] files ({tls.cert}, {tls.key}, {tls.client_ca}): {exc}"
            ) from None
    return msgspec.structs.replace(config, database=database, tls=tls, signing=_signing(path, config.signing))


def _resolve(base: Path, path: str) -> str:
    return path if Path(path).is_absolute() else str((base / path).resolve())


def _signing(path: Path, signing: Signing) -> Signing:
    """Key files resolved against the config's folder and read once, so a bad one is
    a config error at start."""
    from oodida.core.signing import SigningError, load_public_keys

    keys = [k if Path(k).is_absolute() else str((path.parent / k).resolve()) for k in signing.known_keys]
    try:
        load_public_keys(keys)
    except SigningError as exc:
        raise ConfigError(f"{path}: [signing] known_keys: {exc}") from None
    return Signing(known_keys=keys)
