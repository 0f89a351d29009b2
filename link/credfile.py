"""An analyst's (or reader's) credential file: everything the CLI needs to connect.

One TOML file per person, written by `oodida init` or `oodida credentials add
--write`, mode 0600: the server's host and port, the CA that signs the server's
certificate (PEM text inline, so one file is all there is to hand over), the
identity, its role and its secret. `plain = true` (no CA) is for loopback only.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Annotated

import msgspec
from msgspec import Meta

from oodida.core.errors import OodidaError
from oodida.link.tls import client_context, plain_problem
from oodida.wire.messages import Identity, Role


class CredentialFileError(OodidaError, ValueError):
    """The credential file is missing, malformed or unsafe; the message says which."""


class ClientCredentials(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    identity: Identity
    role: Role
    secret: Annotated[str, Meta(min_length=16, max_length=512)]
    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=1, le=65535)] = 7400
    ca: str | None = None  # PEM text of the CA; None: the system's CAs
    plain: bool = False

    def __post_init__(self) -> None:
        if self.plain:
            if self.ca is not None:
                raise ValueError("plain = true and a ca: choose one")
            problem = plain_problem(self.host)
            if problem is not None:
                raise ValueError(problem)

    def ssl_context(self, ca_file: str | None = None) -> ssl.SSLContext | None:
        """None for plain TCP; `ca_file` (the CLI's --ca) overrides the inline CA."""
        if self.plain and ca_file is None:
            return None
        try:
            return client_context(ca=ca_file, cadata=None if ca_file else self.ca)
        except (OSError, ssl.SSLError) as exc:
            raise CredentialFileError(f"cannot load the CA ({ca_file or 'inline'}): {exc}") from None

    def to_toml(self) -> str:
        lines = [
            f"# oodida credential of {self.role.value} {self.identity}: keep it private (mode 0600)",
            f'identity = "{self.identity}"',
            f'role = "{self.role.value}"',
            f'host = "{self.host}"',
            f"port = {self.port}",
            f'secret = "{self.secret}"',
        ]
        if self.plain:
            lines.append("plain = true")
        if self.ca is not None:
            lines.append(f'ca = """\n{self.ca.strip()}\n"""')
        return "\n".join(lines) + "\n"

    def write(self, path: str | Path) -> None:
        """Write with mode 0600 from the first byte; refuse to overwrite."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.to_toml())


def load_client_credentials(path: str | Path) -> ClientCredentials:
    path = Path(path)
    try:
        raw = path.read_bytes()
        mode = path.stat().st_mode
    except OSError as exc:
        raise CredentialFileError(f"cannot read credential file {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise CredentialFileError(
            f"credential file {path} is readable by others (mode {mode & 0o777:o}); chmod 600 it"
        )
    try:
        return msgspec.toml.decode(raw, type=ClientCredentials)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise CredentialFileError(f"{path}: {exc}") from None
