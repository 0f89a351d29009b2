"""The server's configuration: one TOML file, decoded into typed objects.

Unknown keys are an error (a typo must not silently fall back to a default), and
relative paths are taken relative to the file, so a config works from any directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec
from msgspec import Meta

from oodida.errors import OodidaError


class ConfigError(OodidaError, ValueError):
    """The configuration file is missing, malformed, or names impossible values."""


class Listen(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535)] = 7400


class Auth(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Shared tokens, one per role. Enough for loopback and a lab; per-identity
    credentials and TLS come with the security work."""

    vehicle_token: Annotated[str, Meta(min_length=8, max_length=512)]
    analyst_token: Annotated[str, Meta(min_length=8, max_length=512)]


class Sandbox(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Limits for analysts' off-board modules."""

    call_timeout: Annotated[float, Meta(gt=0, le=3600)] = 30.0
    memory_mb: Annotated[int, Meta(ge=128, le=1 << 20)] = 2048
    uid: Annotated[int, Meta(ge=1)] = 65534


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
    auth: Auth
    sandbox: Sandbox = Sandbox()
    listen: Listen = Listen()
    database: str = "oodida-server.sqlite3"
    name: Annotated[str, Meta(max_length=64)] = "oodida"
    max_frame: Annotated[int, Meta(ge=1024, le=1 << 30)] = 16 * 1024 * 1024
    handshake_timeout: Annotated[float, Meta(gt=0, le=600)] = 10.0
    limits: Limits = Limits()


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
    return msgspec.structs.replace(config, database=database)
