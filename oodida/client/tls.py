"""TLS for dialling a server with a secret the user types (the dashboard's sign-in)
rather than from a credential file, which carries its own CA (`ClientCredentials`).
The platform's rule: TLS always, plain TCP to a loopback host only."""

from __future__ import annotations

import ssl

from oodida.link.tls import client_context, plain_problem


def context_for(ca: str | None) -> ssl.SSLContext | None:
    """The context that makes the server's certificate chain to `ca` (a PEM file);
    None (no CA) is plain TCP, which `AnalystClient.connect` allows to a loopback host
    only (`plain_problem` says why not elsewhere)."""
    if ca is None:
        return None
    return client_context(ca=ca)


__all__ = ["context_for", "plain_problem"]
