"""Where an analyst's credential file is, when they do not say.

`oodida init` and `oodida credentials add --write` write one TOML file per person;
analysts should not have to pass it to every call. The order: an explicit path,
then $OODIDA_CREDENTIALS, then `credentials.toml` in ~/.config/oodida/ (or
$XDG_CONFIG_HOME/oodida/), then the only `*.toml` there.
"""

from __future__ import annotations

import os
from pathlib import Path

from oodida.core.errors import OodidaError


class ConfigurationError(OodidaError):
    """No credential file or server address could be found or read; says where we looked."""


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "oodida"


def find_credentials(path: str | os.PathLike[str] | None = None) -> Path:
    if path is not None:
        return Path(path)
    env = os.environ.get("OODIDA_CREDENTIALS")
    if env:
        return Path(env)
    folder = config_dir()
    default = folder / "credentials.toml"
    if default.exists():
        return default
    found = sorted(folder.glob("*.toml")) if folder.is_dir() else []
    if len(found) == 1:
        return found[0]
    if found:
        raise ConfigurationError(
            f"{len(found)} credential files in {folder} ({', '.join(p.name for p in found)}): "
            "pass credentials=FILE, set OODIDA_CREDENTIALS, or name one credentials.toml"
        )
    raise ConfigurationError(
        f"no credentials: pass credentials=FILE, set OODIDA_CREDENTIALS, or put your file at {default}"
        " (oodida init and oodida credentials add --write make them)"
    )


def parse_address(text: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 in brackets) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigurationError(f"server {text!r}: write HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)
