"""Analysts' signatures on modules (ed25519): who may put code on a vehicle.

The server relays modules; with signing, it no longer decides what runs on a
vehicle. An analyst signs each module with a private key only they hold (`oodida
keygen`, then `--sign KEY` on submit and deploy); an agent configured with
`[signing] require = true` loads only modules whose signature verifies under a key
in its own `trusted_keys`. A compromised server can then withhold or replay modules
the analyst signed, but cannot push code of its own.

What is signed is a domain-separated message that binds the module's content hash
and the side it was signed for:

    b"oodida module signature v1\\0" + side + b"\\0" + sha256(source) in hex

- the content hash: the code itself, the only thing that runs;
- the side: a module the analyst signed for the server (`off_board`) is not thereby
  allowed on the vehicles (a signature for one side never verifies for the other);
- the domain prefix: a signature made for this purpose never verifies for another
  use of the same key, nor for a later format of this message (v2).

The module's file name is not bound: it is a label for logs, not what runs, and the
server keeps one name per content hash (a rollback sends that name), so binding it
would refuse a legitimate rollback of a file deployed under two names. The
assignment is not bound either: its id is given by the server after the submit was
signed. See docs/security.md, "Signing modules", for what this does and does not protect.

This module is imported by the agent, the server and the CLI. It is in core, which
imports nothing of oodida's, so it knows a module only by its face (`Signable`: a
name, a source, a signature and its signer, and a copy with another signature), which
`oodida.wire.messages.ModuleSource` has, and an assignment by `SignableSpec`.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Self, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from oodida.core.errors import OodidaError

DOMAIN = b"oodida module signature v1\x00"
SIDES = ("on_board", "off_board")
KEY_ID_CHARS = 16  # 64 bits of sha256: names a key in logs and messages, not a secret
SIGNATURE_BYTES = 64


class SigningError(OodidaError, ValueError):
    """A key file that cannot be written or read, or a module that cannot be signed."""


class Signable(Protocol):
    """A module as signing sees it (`oodida.wire.messages.ModuleSource` is one).

    `__replace__` is the copy protocol of Python 3.13's `copy.replace`, which msgspec
    Structs implement: signing returns a copy of the caller's own type."""

    @property
    def name(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def signature(self) -> bytes | None: ...
    @property
    def signer(self) -> str | None: ...
    def __replace__(self, /, *, signature: bytes, signer: str) -> Self: ...


class SignableSpec(Protocol):
    """An assignment as `sign_spec` sees it (`oodida.wire.messages.AssignmentSpec`)."""

    @property
    def on_board_module(self) -> Signable | None: ...
    @property
    def off_board_module(self) -> Signable | None: ...
    def __replace__(self, /, **modules: Signable) -> Self: ...


SignableT = TypeVar("SignableT", bound=Signable)
SpecT = TypeVar("SpecT", bound=SignableSpec)


def key_id(public_key: Ed25519PublicKey) -> str:
    """The short name of a key: hex of sha256 of its 32 raw bytes, cut to 16 chars."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:KEY_ID_CHARS]


def signed_message(side: str, code_hash: str) -> bytes:
    """The bytes a signature covers (see the module docstring for why these)."""
    if side not in SIDES:
        raise SigningError(f"a module is signed for the on_board or off_board side, not {side!r}")
    return DOMAIN + side.encode() + b"\x00" + code_hash.encode()


def content_hash(source: str) -> str:
    """sha256 of the module's text, as `sandbox.supervisor.source_hash` (and the
    whole system) names a module version."""
    return hashlib.sha256(source.encode()).hexdigest()


@dataclass(frozen=True)
class SigningKey:
    """An analyst's private key, loaded."""

    private: Ed25519PrivateKey
    key_id: str
    path: str

    def signature(self, side: str, code_hash: str) -> bytes:
        """This key's signature of the module whose content hash is `code_hash`, for `side`."""
        return self.private.sign(signed_message(side, code_hash))

    def sign(self, module: SignableT, side: str) -> SignableT:
        """The module with this key's signature for `side` (any earlier one replaced)."""
        return module.__replace__(signature=self.signature(side, content_hash(module.source)), signer=self.key_id)


def verifies(key: Ed25519PublicKey, signature: bytes, side: str, code_hash: str) -> bool:
    """Whether `signature` is `key`'s over the module with `code_hash`, for `side`."""
    try:
        key.verify(signature, signed_message(side, code_hash))
    except InvalidSignature:
        return False
    return True


# --- key files -----------------------------------------------------------------------


def public_path(private_path: str | Path) -> Path:
    path = Path(private_path)
    return path.with_name(path.name + ".pub")


def generate_key(path: str | Path) -> tuple[Path, Path, str]:
    """Write a new private key to `path` (PEM, PKCS#8, mode 0600) and its public key
    to `path`.pub; returns both paths and the key id. Refuses to overwrite either file:
    losing a private key silently would orphan every vehicle that trusts it."""
    private_file, public_file = Path(path), public_path(path)
    for existing in (private_file, public_file):
        if existing.exists() or existing.is_symlink():
            raise SigningError(
                f"{existing} exists; refusing to overwrite a key (remove it first, or pick another name)"
            )
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write_new(private_file, private_pem, 0o600)
    try:
        _write_new(public_file, public_pem, 0o644)
    except SigningError:
        private_file.unlink()
        raise
    return private_file, public_file, key_id(key.public_key())


def _write_new(path: Path, data: bytes, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    except FileExistsError:
        raise SigningError(f"{path} exists; refusing to overwrite a key") from None
    except OSError as exc:
        raise SigningError(f"cannot write {path}: {exc.strerror}") from None
    try:
        os.fchmod(fd, mode)  # whatever the umask
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def load_signing_key(path: str | Path) -> SigningKey:
    """An analyst's private key. Refused when others may read the file (as ssh does):
    a key anyone on the machine could copy proves nothing about who signed."""
    path = Path(path)
    try:
        info = path.stat()
        data = path.read_bytes()
    except OSError as exc:
        raise SigningError(f"cannot read signing key {path}: {exc.strerror}") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SigningError(
            f"signing key {path} is readable by others (mode {stat.S_IMODE(info.st_mode):04o}); chmod 600 it"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningError(f"{path} holds a {type(key).__name__}, not an ed25519 key (make one with oodida keygen)")
    return SigningKey(key, key_id(key.public_key()), str(path))


def load_public_key(path: str | Path) -> tuple[str, Ed25519PublicKey]:
    """(key id, key) of a public key file (PEM, as `oodida keygen` writes NAME.pub)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SigningError(f"cannot read public key {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise SigningError(f"{path} is not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningError(f"{path} holds a {type(key).__name__}, not an ed25519 public key")
    return key_id(key), key


def load_public_keys(paths: Iterable[str | Path]) -> dict[str, Ed25519PublicKey]:
    """key id -> key, for every file; the first problem is raised with the file named."""
    keys: dict[str, Ed25519PublicKey] = {}
    for path in paths:
        kid, key = load_public_key(path)
        keys[kid] = key
    return keys


# --- verification ----------------------------------------------------------------------


def signature_problem(
    module: Signable, side: str, keys: Mapping[str, Ed25519PublicKey], *, require: bool
) -> str | None:
    """Why `module` must be refused for `side`, or None when it may run.

    - signed by a key in `keys`: the signature must verify over this very source,
      else refused (whatever `require` says: a known key whose signature fails means
      the module was altered or the signature belongs to another module);
    - signed by another key: refused with `require` (not trusted), else accepted
      (there is nothing to check it against);
    - unsigned: refused with `require`, else accepted.
    """
    name = module.name
    if module.signature is None or module.signer is None:
        if require:
            return f"{name} is not signed; this vehicle runs only modules signed by a key it trusts"
        return None
    if len(module.signature) != SIGNATURE_BYTES:
        return (
            f"{name}: malformed signature ({len(module.signature)} bytes;"
            f" an ed25519 signature has {SIGNATURE_BYTES})"
        )
    key = keys.get(module.signer)
    if key is None:
        if require:
            trusted = ", ".join(sorted(keys)) or "none"
            return f"{name} is signed by key {module.signer}, which is not trusted here (trusted: {trusted})"
        return None
    code_hash = content_hash(module.source)
    if not verifies(key, module.signature, side, code_hash):
        return (
            f"{name}: the signature by key {module.signer} does not verify over this source ({code_hash[:12]}…) for"
            f" the {side.replace('_', '-')} side: the module was altered after it was signed, or the signature is"
            " another module's"
        )
    return None


@dataclass(frozen=True)
class Trust:
    """What one process accepts: the keys it knows and whether a module must carry a
    signature by one of them. Agents configure it (`[signing]`); the server knows
    keys only to refuse early what the vehicles would refuse anyway, never requires."""

    keys: Mapping[str, Ed25519PublicKey]
    require: bool = False

    @classmethod
    def from_files(cls, paths: Iterable[str | Path], *, require: bool = False) -> Trust:
        return cls(load_public_keys(paths), require)

    def problem(self, module: Signable, side: str) -> str | None:
        """Why `module` must be refused for `side`, or None (see `signature_problem`)."""
        return signature_problem(module, side, self.keys, require=self.require)


def sign_spec(key: SigningKey, spec: SpecT) -> SpecT:
    """An assignment with each of its modules signed for the side it runs on."""
    if spec.on_board_module is None and spec.off_board_module is None:
        raise SigningError("--sign: the assignment sends no module to sign (it uses built-in methods)")
    changes = {
        field: key.sign(module, side)
        for field, side, module in (
            ("on_board_module", "on_board", spec.on_board_module),
            ("off_board_module", "off_board", spec.off_board_module),
        )
        if module is not None
    }
    return spec.__replace__(**changes)
