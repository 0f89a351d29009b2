"""SCRAM-SHA-256 arithmetic (RFC 5802 / RFC 7677), over our own CBOR messages.

Why SCRAM and not a token in the hello: the server keeps only `StoredKey` and
`ServerKey`, never the secret, so a stolen database does not let anyone log in; the
client proves it knows the secret over a nonce the server chose for this connection,
so a recorded handshake cannot be replayed; and the server proves it knows the
credential too (its signature in `Welcome`), so a client does not talk to an impostor
that merely holds a certificate.

Cost: the server does a handful of HMACs per handshake and no key stretching (the
salted password is derived once, when the credential is made). The client derives it
once per (secret, salt, iterations) and caches it, so a process that holds thousands
of vehicles' connections (the scale benchmark) pays PBKDF2 once per vehicle, not per
reconnect. Secrets are 256-bit random, so stretching is not what keeps them safe; the
iteration count is RFC 7677's minimum by default.

Pure computation on bytes: no I/O, so it lives in `wire` beside the messages.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass

import cbor2

DEFAULT_ITERATIONS = 4096  # RFC 7677's minimum; secrets are random, see above
MIN_ITERATIONS = 4096
MAX_ITERATIONS = 1_000_000  # a client will not burn minutes on a server's whim
NONCE_BYTES = 24
SALT_BYTES = 16
SECRET_BYTES = 32  # 256-bit random secrets


def new_secret() -> str:
    """A fresh 256-bit secret, as text that survives files and environment variables."""
    return secrets.token_urlsafe(SECRET_BYTES)


def new_nonce() -> bytes:
    return secrets.token_bytes(NONCE_BYTES)


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.digest(key, data, "sha256")


@functools.lru_cache(maxsize=65536)
def salted_password(secret: str, salt: bytes, iterations: int) -> bytes:
    """Hi(secret, salt, i) of RFC 5802: PBKDF2-HMAC-SHA-256. Cached: see the module doc."""
    return hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, iterations)


@dataclass(frozen=True)
class StoredCredential:
    """What the server keeps of a secret: enough to check a proof, not to make one."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


def derive(secret: str, *, salt: bytes | None = None, iterations: int = DEFAULT_ITERATIONS) -> StoredCredential:
    """The stored form of `secret` (with a fresh salt unless one is given)."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    salted = salted_password(secret, salt, iterations)
    client_key = _hmac(salted, b"Client Key")
    return StoredCredential(
        salt=salt,
        iterations=iterations,
        stored_key=hashlib.sha256(client_key).digest(),
        server_key=_hmac(salted, b"Server Key"),
    )


def auth_message(role: str, identity: str, client_nonce: bytes, nonce: bytes, salt: bytes, iterations: int) -> bytes:
    """RFC 5802's AuthMessage: everything both sides said in the handshake, in one
    canonical CBOR array, so a proof is bound to this role, identity and these nonces."""
    return cbor2.dumps(["oodida-scram-sha-256/1", role, identity, client_nonce, nonce, salt, iterations])


def client_proof(secret: str, salt: bytes, iterations: int, message: bytes) -> tuple[bytes, bytes]:
    """(ClientProof, the ServerSignature we expect) for AuthMessage `message`."""
    salted = salted_password(secret, salt, iterations)
    client_key = _hmac(salted, b"Client Key")
    stored_key = hashlib.sha256(client_key).digest()
    signature = _hmac(stored_key, message)
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    return proof, _hmac(_hmac(salted, b"Server Key"), message)


def verify_proof(credential: StoredCredential, message: bytes, proof: bytes) -> bytes | None:
    """The ServerSignature to send back if `proof` is right, else None. HMACs only."""
    if len(proof) != len(credential.stored_key):
        return None
    signature = _hmac(credential.stored_key, message)
    client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
    if not hmac.compare_digest(hashlib.sha256(client_key).digest(), credential.stored_key):
        return None
    return _hmac(credential.server_key, message)


def check_server_signature(expected: bytes, signature: bytes) -> bool:
    return hmac.compare_digest(expected, signature)
