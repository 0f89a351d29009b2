"""The operator's commands: `oodida init` and `oodida credentials add|revoke|list`.

They work on files (the deployment directory, the server's database), not over the
network: managing who may connect needs access to the server's host, not a login.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from oodida.core.errors import OodidaError
from oodida.link.credfile import ClientCredentials
from oodida.wire.messages import Role


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()] if text else []


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("init", help="a new deployment: CA, certificates, configs, hashed credentials")
    p.add_argument("dir", help="a new (or empty) directory")
    p.add_argument("--vehicles", default="", help="comma-separated vehicle ids, e.g. car-1,car-2")
    p.add_argument("--analysts", default="", help="comma-separated analysts (submit, deploy, cancel, read)")
    p.add_argument("--readers", default="", help="comma-separated read-only analysts (status, results, versions)")
    p.add_argument("--host", default="", help="comma-separated names/IPs clients dial (the server certificate's SAN); "
                   "default localhost,127.0.0.1,::1")
    p.add_argument("--port", type=int, default=7400)
    p.add_argument("--vehicle-certificates", action="store_true",
                   help="vehicles must also present their client certificate (mutual TLS)")

    p = sub.add_parser("credentials", help="add, revoke or list who may connect")
    cred = p.add_subparsers(dest="action", required=True)
    a = cred.add_parser("add", help="a new credential; prints its secret, once")
    a.add_argument("identity")
    a.add_argument("--role", choices=[r.value for r in Role], required=True)
    a.add_argument("--config", required=True, help="the server's server.toml")
    a.add_argument("--expires", help="ISO date or time (UTC unless it says), e.g. 2027-06-30")
    a.add_argument("--replace", action="store_true", help="rotate: the old secret stops working at once")
    a.add_argument("--write", metavar="PATH",
                   help="also write the credentials out: a credential file for the CLI (analysts, readers), "
                        "or a vehicle's folder as oodida init writes it (vehicles; needs --ca and --ca-key)")
    a.add_argument("--host", help="server host for --write (default: the config's listen host)")
    a.add_argument("--ca", help="the deployment's CA certificate (DIR/ca.pem of oodida init), for --write")
    a.add_argument("--ca-key", help="the CA's key (DIR/ca.key), to issue a vehicle's certificate for --write")
    r = cred.add_parser("revoke", help="refuse this identity's handshakes from now on")
    r.add_argument("identity")
    r.add_argument("--config", required=True)
    l_ = cred.add_parser("list", help="identities, roles, expiry, revocation (never secrets)")
    l_.add_argument("--config", required=True)
    l_.add_argument("--json", action="store_true")


def _expiry(text: str | None) -> float | None:
    if not text:
        return None
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise OodidaError(
            f"--expires {text!r}: write an ISO date or time, e.g. 2027-06-30 or 2027-06-30T12:00"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


def _ca(args: argparse.Namespace, role: Role, plain: bool) -> Any:
    """The CA (`server.pki.Issued`; its key only when needed) for --write, or None."""
    from cryptography import x509

    from oodida.server.pki import Issued, load_ca

    if not args.write or plain:
        return None
    if role is Role.VEHICLE and not (args.ca and args.ca_key):
        raise OodidaError("a vehicle's folder holds its certificate: give --ca DIR/ca.pem and --ca-key DIR/ca.key")
    if not args.ca:
        raise OodidaError("--write needs --ca DIR/ca.pem, the CA the server's certificate chains to")
    try:
        if args.ca_key:
            return load_ca(Path(args.ca), Path(args.ca_key))
        return Issued(x509.load_pem_x509_certificate(Path(args.ca).read_bytes()), None)  # type: ignore[arg-type]
    except (OSError, ValueError) as exc:
        raise OodidaError(f"cannot load the CA ({args.ca}, {args.ca_key}): {exc}") from None


def _init(args: argparse.Namespace) -> int:
    from oodida.server.init import init_deployment

    deployment = init_deployment(
        args.dir,
        vehicles=_names(args.vehicles),
        analysts=_names(args.analysts),
        readers=_names(args.readers),
        hosts=_names(args.host) or None,
        port=args.port,
        vehicle_certificates=args.vehicle_certificates,
    )
    print(f"deployment written to {deployment.root}")
    print(f"  server:   oodida server --config {deployment.server_config}")
    for vehicle, directory in deployment.vehicles.items():
        print(f"  vehicle {vehicle}: {directory}/agent.toml (add its [[sources]])")
    for person, path in deployment.clients.items():
        print(f"  {person}: oodida status --credentials {path}")
    print(f"  keep {deployment.root / 'ca.key'} offline; it signs every certificate of this deployment")
    return 0


def _open_credentials(database: str, check: str) -> Any:
    """The credentials of a database `check_database` finds usable (one sentence, exit 2, if not)."""
    import sqlite3

    from oodida.server.credentials import Credentials
    from oodida.server.dbcheck import DatabaseUnusable, check_database, describe

    check_database(database, quick=check == "quick")
    try:
        return Credentials(database)
    except sqlite3.Error as exc:
        raise DatabaseUnusable(describe(database, exc)) from None


def _credentials(args: argparse.Namespace) -> int:
    from oodida.server.config import load_server_config
    from oodida.server.credentials import iso

    config = load_server_config(args.config)
    store = _open_credentials(config.database, config.database_check)
    try:
        if args.action == "add":
            role = Role(args.role)
            ca = _ca(args, role, config.listen.plain)  # before anything is stored: a bad --ca changes nothing
            secret = store.add(args.identity, role, expires=_expiry(args.expires), replace=args.replace)
            if args.write:
                host = args.host or config.listen.host
                if role is Role.VEHICLE:
                    from oodida.server.init import write_vehicle

                    issuer = None if config.listen.plain else ca
                    write_vehicle(issuer, Path(args.write), args.identity, secret, host, config.listen.port)
                    print(f"vehicle folder written to {args.write} (agent.toml, secret, certificate)", file=sys.stderr)
                else:
                    ClientCredentials(
                        identity=args.identity, role=role, secret=secret, host=host, port=config.listen.port,
                        ca=None if ca is None else ca.cert.public_bytes(Encoding.PEM).decode(),
                        plain=config.listen.plain,
                    ).write(args.write)
                    print(f"credential file written to {args.write}", file=sys.stderr)
            print(secret)  # the only time it is shown
            print("(this secret is shown once and stored only hashed; keep it)", file=sys.stderr)
        elif args.action == "revoke":
            store.revoke(args.identity)
            print(f"revoked {args.identity}; its next handshake is refused")
        else:
            for c in store.list():
                row = {
                    "identity": c.identity, "role": c.role.value, "created": iso(c.created),
                    "expires": iso(c.expires) if c.expires else None,
                    "revoked": iso(c.revoked_at) if c.revoked_at else None,
                }
                if args.json:
                    print(json.dumps(row))
                else:
                    state = f"revoked {row['revoked']}" if row["revoked"] else (
                        f"expires {row['expires']}" if row["expires"] else "no expiry")
                    print(f"{c.identity:24} {c.role.value:8} {state}")
    finally:
        store.close()
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"init": _init, "credentials": _credentials}
