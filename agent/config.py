"""The agent's configuration: one TOML file, decoded into typed objects.

Unknown keys are errors; relative paths are relative to the file. A CAN source is
configured, not coded: any python-can interface and channel, or a recorded log
replayed at a chosen speed from a chosen offset. A GPS receiver on a serial port is
a source too (`kind = "gps"`).
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from oodida.core.errors import OodidaError
from oodida.core.metrics import Metrics
from oodida.link.tls import client_context, plain_problem
from oodida.wire.messages import Identity, SignalName


class ConfigError(OodidaError, ValueError):
    """The configuration file is missing, malformed, or names impossible values."""


class ServerLink(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Where the server is and how to prove who we are.

    `secret_file` holds this vehicle's secret (`oodida init` writes it, mode 0600).
    TLS always, unless `plain = true` on a loopback host: the server's certificate must
    chain to `ca` (else to the system's CAs) and name `host`; `cert`/`key` are this
    vehicle's own certificate, for servers that require one."""

    secret_file: str
    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=1, le=65535)] = 7400
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    plain: bool = False
    backoff_min: Annotated[float, Meta(gt=0, le=60)] = 0.2  # seconds before the first retry
    backoff_max: Annotated[float, Meta(gt=0, le=600)] = 10.0
    status_interval: Annotated[float, Meta(gt=0, le=3600)] = 2.0
    connect_timeout: Annotated[float, Meta(gt=0, le=600)] = 10.0

    def __post_init__(self) -> None:
        if self.plain:
            if self.ca is not None or self.cert is not None:
                raise ValueError("plain = true and TLS files (ca, cert): choose one")
            problem = plain_problem(self.host)
            if problem is not None:
                raise ValueError(problem)
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert and key go together")

    def secret(self) -> str:
        """The secret, read when needed (not kept in the config object's repr)."""
        try:
            with open(self.secret_file) as f:
                mode = os.fstat(f.fileno()).st_mode
                secret = f.read().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the secret file {self.secret_file}: {exc.strerror}") from None
        if mode & 0o007:  # group-readable is fine: the service's own group (systemd/README.md)
            raise ConfigError(
                f"the secret file {self.secret_file} is readable by every user (mode {mode & 0o777:o}); chmod 600 it"
            )
        if not secret:
            raise ConfigError(f"the secret file {self.secret_file} is empty")
        return secret

    def ssl_context(self) -> ssl.SSLContext | None:
        """None for plain TCP; else a client context (raises ConfigError for bad files)."""
        if self.plain:
            return None
        try:
            return client_context(ca=self.ca, cert=self.cert, key=self.key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load the TLS files of [server] ({self.ca}, {self.cert}): {exc}") from None


class LogSource(msgspec.Struct, forbid_unknown_fields=True, frozen=True, tag="log", tag_field="kind"):
    """A recorded log (any format `can.LogReader` reads) replayed as if live."""

    path: str
    dbc: str
    signals: Annotated[list[SignalName], Meta(max_length=10_000)] | None = None  # None: every DBC signal
    channel: str | None = None  # keep only frames of this channel, e.g. "can0"
    speed: Annotated[float, Meta(ge=0, le=1000)] = 1.0  # 1 = real time, 0 = as fast as possible
    offset: Annotated[float, Meta(ge=0)] = 0.0  # seconds into the log to start at
    loop: bool = False


class BusSource(msgspec.Struct, forbid_unknown_fields=True, frozen=True, tag="bus", tag_field="kind"):
    """A live bus through python-can: `socketcan`/`vcan0`, `virtual`/`demo`, ..."""

    interface: str
    channel: str
    dbc: str
    signals: Annotated[list[SignalName], Meta(max_length=10_000)] | None = None
    bitrate: Annotated[int, Meta(gt=0)] | None = None
    kernel_filters: bool = True  # let the kernel drop frames the DBC cannot decode


class GpsSource(msgspec.Struct, forbid_unknown_fields=True, frozen=True, tag="gps", tag_field="kind"):
    """An NMEA GPS receiver on a serial port; its signals are `<prefix>.LATITUDE`, ...

    `port` is a device path or a pyserial URL, taken as written (not relative to this
    file): device names are the system's, not the configuration's."""

    port: Annotated[str, Meta(min_length=1, max_length=4096)]
    baudrate: Annotated[int, Meta(gt=0, le=4_000_000)] = 9600
    prefix: Annotated[str, Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")] = "GPS"  # two receivers need two prefixes
    reopen_min: Annotated[float, Meta(gt=0, le=60)] = 0.5  # seconds before the first retry after the device vanished
    reopen_max: Annotated[float, Meta(gt=0, le=600)] = 10.0

    def __post_init__(self) -> None:
        if self.reopen_min > self.reopen_max:
            raise ValueError(f"reopen_min ({self.reopen_min}) must not exceed reopen_max ({self.reopen_max})")


Source = LogSource | BusSource | GpsSource


class Buffer(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    retention: Annotated[float, Meta(gt=0, le=86_400 * 7)] = 300.0  # seconds of history per signal
    max_samples: Annotated[int, Meta(ge=16, le=100_000_000)] = 200_000  # hard cap per signal


class Sandbox(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Limits for analysts' modules on this vehicle."""

    call_timeout: Annotated[float, Meta(gt=0, le=3600)] = 10.0  # wall-clock seconds per call
    memory_mb: Annotated[int, Meta(ge=128, le=1 << 20)] = 1024  # the worker's address space
    uid: Annotated[int, Meta(ge=1)] = 65534  # the worker's uid when the agent runs as root
    # live workers (one per assignment, forked from one zygote); past it the least
    # recently used idle one is evicted and its module loaded again at its next call
    max_workers: Annotated[int, Meta(ge=1, le=1024)] = 16


class Signing(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Which analysts' modules this vehicle runs. With `require`, only modules signed by
    one of `trusted_keys` (public key files written by `oodida keygen`, relative to
    this file): the server relays modules but cannot make the vehicle run its own.
    Without it, unsigned modules run, and a signature by a trusted key must still
    verify (see `oodida.core.signing.signature_problem`)."""

    require: bool = False
    trusted_keys: Annotated[list[str], Meta(max_length=256)] = msgspec.field(default_factory=list)


class OutboxSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Where results wait for the server's acknowledgement (agent/outbox.py).

    A relative `path` is relative to `$STATE_DIRECTORY` when systemd sets it (the
    unit's `StateDirectory=`, /var/lib/oodida-agent: the configuration's folder is
    read-only there), else to this file, like every other path."""

    path: Annotated[str, Meta(min_length=1, max_length=4096)] = "outbox.sqlite3"
    max_results: Annotated[int, Meta(ge=1, le=10_000_000)] = 10_000
    max_bytes: Annotated[int, Meta(ge=1 << 20, le=1 << 40)] = 256 * 1024 * 1024
    # FULL: a committed result survives a power cut (an fsync per result). NORMAL only a
    # crash of the agent: for simulated fleets whose agents share one disk (benchmarks)
    synchronous: Literal["FULL", "NORMAL"] = "FULL"


class AgentConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    vehicle: Identity
    server: ServerLink
    sources: Annotated[list[Source], Meta(min_length=1, max_length=64)]
    buffer: Buffer = Buffer()
    sandbox: Sandbox = Sandbox()
    signing: Signing = Signing()
    outbox: OutboxSettings = OutboxSettings()
    metrics: Metrics | None = None  # None: no metrics endpoint
    log_level: Literal["debug", "info", "warning", "error"] = "info"


def _resolve(base: Path, path: str) -> str:
    return path if Path(path).is_absolute() else str((base / path).resolve())


def load_agent_config(path: str | Path) -> AgentConfig:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read agent config {path}: {exc.strerror}") from None
    try:
        config = msgspec.toml.decode(raw, type=AgentConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    sources: list[Source] = []
    prefixes = [s.prefix for s in config.sources if isinstance(s, GpsSource)]
    if len(set(prefixes)) < len(prefixes):
        raise ConfigError(f"{path}: two gps sources share a prefix; give each its own `prefix`")
    for source in config.sources:
        if isinstance(source, GpsSource):
            sources.append(source)
            continue
        changes = {"dbc": _resolve(path.parent, source.dbc)}
        if isinstance(source, LogSource):
            changes["path"] = _resolve(path.parent, source.path)
        sources.append(msgspec.structs.replace(source, **changes))
    link = config.server
    files = {
        name: _resolve(path.parent, value)
        for name in ("secret_file", "ca", "cert", "key")
        if (value := getattr(link, name)) is not None
    }
    link = msgspec.structs.replace(link, **files)
    link.secret(), link.ssl_context()  # unreadable credentials fail here, with the file's name, not at connect
    outbox = msgspec.structs.replace(config.outbox, path=_state_path(path.parent, config.outbox.path))
    return msgspec.structs.replace(
        config, sources=sources, server=link, signing=_signing(path, config.signing), outbox=outbox
    )


def _signing(path: Path, signing: Signing) -> Signing:
    """The key files resolved against the config's folder, each read once here so a
    missing or bad one stops the agent at start with the reason, not at the first
    module."""
    from oodida.core.signing import SigningError, load_public_keys

    keys = [_resolve(path.parent, k) for k in signing.trusted_keys]
    if signing.require and not keys:
        raise ConfigError(f"{path}: [signing] require = true needs trusted_keys (public key files) to trust")
    try:
        load_public_keys(keys)
    except SigningError as exc:
        raise ConfigError(f"{path}: [signing] trusted_keys: {exc}") from None
    return msgspec.structs.replace(signing, trusted_keys=keys)


def _state_path(base: Path, path: str) -> str:
    """State (the outbox) goes to systemd's `$STATE_DIRECTORY` when it is set: the
    configuration's folder is read-only under the unit (`ProtectSystem=strict`)."""
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return _resolve(Path(state) if state else base, path)
