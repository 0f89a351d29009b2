"""How every network command reaches the server: the connection flags and the client
they make (oodida.client), with one usage error for what the user must mend."""

from __future__ import annotations

import argparse
import os

from oodida.client import AsyncClient, ConfigurationError
from oodida.core.errors import OodidaError


class UsageError(OodidaError):
    pass


def add_connection(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--server", default=os.environ.get("OODIDA_SERVER"),
        help="HOST:PORT, instead of the credential file's (env OODIDA_SERVER)"
    )
    p.add_argument(
        "--credentials", default=os.environ.get("OODIDA_CREDENTIALS"),
        help="your credential file, from oodida init or oodida credentials add --write (env OODIDA_CREDENTIALS)",
    )
    p.add_argument("--ca", help="CA certificate (PEM) of the server, instead of the one in the credential file")
    p.add_argument("--json", action="store_true", help="machine-readable output, one JSON object per line")


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise UsageError(f"--server {text!r}: write HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


async def connect(args: argparse.Namespace) -> AsyncClient:
    """The analysts' client (oodida.client), as every analyst command's connection."""
    if not args.credentials:
        raise UsageError("no credentials: pass --credentials FILE or set OODIDA_CREDENTIALS (oodida init writes them)")
    server = _address(args.server) if args.server else None
    try:
        return await AsyncClient.connect(args.credentials, server=server, ca=args.ca)
    except ConfigurationError as exc:  # bad configuration: exit 2, as for bad usage
        raise UsageError(str(exc)) from None
