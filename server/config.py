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


class Signing(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Analysts' public keys the server knows (files relative to this file). A module
    signed by one of them must verify, else the submit or deploy is refused at once
    rather than by every vehicle. The server never requires signatures and has no say
    over which keys the vehicles trust: that is each agent's `[signing]`."""

    known_keys: Annotated[list[str], Meta(max_length=1024)] = msgspec.field(default_factory=list)


class ServerConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    auth: Auth
    sandbox: Sandbox = Sandbox()
    signing: Signing = Signing()
    listen: Listen = Listen()
    database: str = "oodida-server.sqlite3"
    name: Annotated[str, Meta(max_length=64)] = "oodida"
    max_frame: Annotated[int, Meta(ge=1024, le=1 << 30)] = 16 * 1024 * 1024
    handshake_timeout: Annotated[float, Meta(gt=0, le=600)] = 10.0


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
    return msgspec.structs.replace(config, database=database, signing=_signing(path, config.signing))


def _signing(path: Path, signing: Signing) -> Signing:
    """Key files resolved against the config's folder and read once, so a bad one is
    a config error at start."""
    from oodida.signing import SigningError, load_public_keys

    keys = [k if Path(k).is_absolute() else str((path.parent / k).resolve()) for k in signing.known_keys]
    try:
        load_public_keys(keys)
    except SigningError as exc:
        raise ConfigError(f"{path}: [signing] known_keys: {exc}") from None
    return Signing(known_keys=keys)
