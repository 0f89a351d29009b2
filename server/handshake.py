"""The server's side of the handshake: hello, challenge, proof, welcome.

Each refusal carries the reason a legitimate operator needs to fix it (no credential,
expired, revoked, wrong role, wrong secret, missing certificate). The work per
handshake is one indexed read of the credentials table and a few HMACs: no key
stretching, so a fleet of thousands reconnecting at once costs little (see
`wire.scram`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable

from oodida.link import Channel
from oodida.link.tls import certificate_names
from oodida.server import metrics
from oodida.server.config import ServerConfig
from oodida.server.credentials import Credentials
from oodida.server.revocation import Revoker
from oodida.wire import RemoteProtocolError, Role, scram, version_problem
from oodida.wire.messages import ErrorCode, Hello, Message, Proof

log = logging.getLogger(__name__)

WRONG_PROOF = "wrong proof (wrong secret, or a replayed handshake)"


def certificate_problem(channel: Channel, hello: Hello, config: ServerConfig) -> str | None:
    """Why this peer's TLS certificate (or its lack) does not fit its hello, or None.

    A certificate names its holder: whoever presents one must be that holder. With
    `vehicle_certificates`, a vehicle must present one."""
    names = certificate_names(channel.peercert)
    role, identity = hello.role.value, hello.identity
    if not names:
        tls = config.tls
        if tls is not None and tls.vehicle_certificates and hello.role is Role.VEHICLE:
            return f"vehicle {identity} presented no client certificate; this server requires one from its client CA"
        return None
    if identity not in names:
        return f"the client certificate is for {', '.join(sorted(names))}, not {role} {identity}"
    return None


async def _step(channel: Channel, what: str, timeout: float, budget: float) -> Message | None:
    """The peer's next handshake message within `timeout`, or None once it was told
    why (a broken message) or timed out (the whole handshake has `budget` seconds)."""
    try:
        return await asyncio.wait_for(channel.recv(), timeout)
    except TimeoutError:
        log.info("%s sent no %s within %s s; closing", channel.peer, what, budget)
        metrics.handshake_refused("timeout")
    except RemoteProtocolError as exc:
        log.info("%s broke the handshake: %s", channel.peer, exc.reason)
        metrics.handshake_refused("malformed")
        await channel.send_bytes(channel.conn.error(exc.reason))
    return None


async def authenticate(
    channel: Channel, credentials: Credentials, config: ServerConfig, revoker: Revoker | None = None,
    admit: Callable[[Hello, Channel], Awaitable[str | None]] | None = None,
) -> Hello | None:
    """Run the handshake on a fresh server channel: the peer's hello if it proved its
    credential (the channel is then READY, and `revoker` ends it if the credential is
    revoked later), else None (it was told why and closed).

    `admit`, asked once the proof holds (so only the credential's holder learns why),
    may refuse a peer for the server's own reasons (a vehicle connected twice): its
    answer is the reason, which it has logged as it sees fit."""
    deadline = time.monotonic() + config.handshake_timeout
    conn = channel.conn
    hello = await _step(channel, "hello", config.handshake_timeout, config.handshake_timeout)
    if hello is None:
        return None
    assert isinstance(hello, Hello)
    problem = version_problem(hello)
    if problem is not None:
        await _refuse(channel, hello, problem, ErrorCode.VERSION, kind="version")
        return None
    credential = credentials.get(hello.identity)
    if credential is None:
        problem, kind = f"no credential for {hello.role.value} {hello.identity!r}", "unknown_identity"
    else:
        problem = credential.problem(hello.role)
        kind = "certificate" if problem is None else metrics.credential_refusal(credential)
        problem = problem or certificate_problem(channel, hello, config)
    if problem is not None or credential is None:
        await _refuse(channel, hello, problem or "no credential", kind=kind)
        return None
    stored = credential.stored
    nonce = hello.nonce + secrets.token_bytes(scram.NONCE_BYTES)
    await channel.send_bytes(conn.challenge(nonce, stored.salt, stored.iterations))
    proof = await _step(channel, "proof", max(0.0, deadline - time.monotonic()), config.handshake_timeout)
    if proof is None:
        return None
    assert isinstance(proof, Proof)
    message = scram.auth_message(
        hello.role.value, hello.identity, hello.nonce, nonce, stored.salt, stored.iterations
    )
    signature = scram.verify_proof(stored, message, proof.proof)
    if signature is None:
        reason = f"{WRONG_PROOF} for {hello.role.value} {hello.identity}"
        await _refuse(channel, hello, reason, kind="wrong_proof")
        return None
    if admit is not None and (problem := await admit(hello, channel)) is not None:
        metrics.handshake_refused("duplicate")
        await channel.send_bytes(conn.reject(problem, ErrorCode.DUPLICATE))
        return None
    await channel.send_bytes(
        conn.accept(hello, session=secrets.token_hex(8), server=config.name, signature=signature)
    )
    if revoker is not None:
        revoker.admit(hello.identity, channel)
    metrics.handshake_accepted(hello.role.value)
    log.info("%s %s connected from %s", hello.role.value, hello.identity, channel.peer)
    return hello


async def _refuse(
    channel: Channel, hello: Hello, reason: str, code: ErrorCode = ErrorCode.AUTH, *, kind: str
) -> None:
    metrics.handshake_refused(kind)
    log.warning("refused %s %s from %s: %s", hello.role.value, hello.identity, channel.peer, reason)
    await channel.send_bytes(channel.conn.reject(reason, code))
    return None


__all__ = ["WRONG_PROOF", "authenticate", "certificate_problem"]
