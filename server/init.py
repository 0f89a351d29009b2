"""`oodida init DIR`: a new deployment's CA, certificates, configs and credentials.

What it writes (keys and secrets mode 0600):

    DIR/ca.pem, DIR/ca.key                     the private CA (keep ca.key offline)
    DIR/server/server.toml                     TLS on, database beside it
    DIR/server/server.pem, server.key, ca.pem  the server's certificate (SAN: --host)
    DIR/server/oodida-server.sqlite3           credentials, hashed (SCRAM keys only)
    DIR/vehicles/ID/agent.toml                 vehicle id and [server]; add [[sources]]
    DIR/vehicles/ID/secret, cert.pem, key.pem, ca.pem
    DIR/analysts/ID.toml                       credential file for the CLI (analysts and readers)

It refuses to touch a directory that already holds a deployment: overwriting a CA or
a database would lock every vehicle out.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from oodida.core.errors import OodidaError
from oodida.link.credfile import ClientCredentials
from oodida.link.tls import is_loopback
from oodida.server.credentials import Credentials, check_identity
from oodida.server.pki import Issued, issue, make_ca, write_cert, write_private
from oodida.wire.messages import Role

DEFAULT_HOSTS = ["localhost", "127.0.0.1", "::1"]
DATABASE = "oodida-server.sqlite3"


class InitError(OodidaError):
    """The deployment cannot be written where asked; the message says why."""


@dataclass
class Deployment:
    root: Path
    server_config: Path
    database: Path
    ca: Path
    vehicles: dict[str, Path] = field(default_factory=dict)  # id -> its directory
    clients: dict[str, Path] = field(default_factory=dict)  # analyst or reader -> credential file


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_vehicle(ca: Issued | None, directory: Path, vehicle: str, secret: str, host: str, port: int) -> Path:
    """A vehicle's credentials: secret, certificate and key, the CA, and an agent.toml
    whose [server] table points at them (relative paths, so the folder can move).
    Without a CA (plain TCP on loopback): the secret only."""
    directory.mkdir(parents=True)
    write_private(directory / "secret", (secret + "\n").encode())
    if ca is not None:
        issue(ca, vehicle).write(directory / "cert.pem", directory / "key.pem")
        write_cert(directory / "ca.pem", ca.cert)
        tls = 'ca = "ca.pem"\ncert = "cert.pem"\nkey = "key.pem"\n'
    else:
        tls = "plain = true\n"
    (directory / "agent.toml").write_text(
        f"vehicle = {_toml_str(vehicle)}\n\n"
        f"[server]\nhost = {_toml_str(host)}\nport = {port}\n"
        f'secret_file = "secret"\n{tls}\n'
        "# add this vehicle's sources, e.g.\n"
        '# [[sources]]\n# kind = "bus"\n# interface = "socketcan"\n# channel = "can0"\n# dbc = "/etc/oodida/car.dbc"\n'
    )
    return directory / "agent.toml"


def init_deployment(
    root: str | Path,
    *,
    vehicles: Sequence[str] = (),
    analysts: Sequence[str] = (),
    readers: Sequence[str] = (),
    hosts: list[str] | None = None,
    port: int = 7400,
    listen: str | None = None,
    vehicle_certificates: bool = False,
    database: str = DATABASE,
    plain: bool = False,
) -> Deployment:
    """Write a deployment under `root` (see the module doc). `database` (relative to
    DIR/server, or absolute) and `plain` (no CA, plain TCP: loopback only) are for
    local fleets and tests."""
    root = Path(root)
    hosts = list(hosts or DEFAULT_HOSTS)
    names = [*vehicles, *analysts, *readers]
    if len(set(names)) != len(names):
        raise InitError("an identity is named twice (vehicles, analysts and readers share one namespace)")
    for name in names:
        check_identity(name)
    if plain and not all(is_loopback(h) for h in hosts):
        raise InitError(f"plain TCP is only allowed on loopback hosts, not {', '.join(hosts)}")
    if root.exists() and any(root.iterdir()):
        raise InitError(f"{root} is not empty; refusing to overwrite a deployment (choose a new directory)")
    if listen is None:
        listen = "127.0.0.1" if all(is_loopback(h) for h in hosts) else "0.0.0.0"
    root.mkdir(parents=True, exist_ok=True)
    server_dir = root / "server"
    server_dir.mkdir()
    ca: Issued | None = None
    ca_pem: str | None = None
    if plain:
        transport = "plain = true\n"
    else:
        ca = make_ca()
        write_cert(root / "ca.pem", ca.cert)
        write_private(
            root / "ca.key",
            ca.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()),
        )
        issue(ca, hosts[0], hosts=hosts, server=True).write(server_dir / "server.pem", server_dir / "server.key")
        shutil.copyfile(root / "ca.pem", server_dir / "ca.pem")
        ca_pem = (root / "ca.pem").read_text()
        transport = (
            '\n[tls]\ncert = "server.pem"\nkey = "server.key"\nclient_ca = "ca.pem"\n'
            f"vehicle_certificates = {'true' if vehicle_certificates else 'false'}\n"
        )
    config = server_dir / "server.toml"
    config.write_text(
        f"database = {_toml_str(database)}\n\n"
        f"[listen]\nhost = {_toml_str(listen)}\nport = {port}\n{transport}"
    )
    deployment = Deployment(root, config, server_dir / database, root / "ca.pem")
    credentials = Credentials(deployment.database)
    try:
        for vehicle in vehicles:
            secret = credentials.add(vehicle, Role.VEHICLE)
            write_vehicle(ca, root / "vehicles" / vehicle, vehicle, secret, hosts[0], port)
            deployment.vehicles[vehicle] = root / "vehicles" / vehicle
        for role, people in ((Role.ANALYST, analysts), (Role.READER, readers)):
            for person in people:
                secret = credentials.add(person, role)
                (root / "analysts").mkdir(exist_ok=True)
                path = root / "analysts" / f"{person}.toml"
                ClientCredentials(
                    identity=person, role=role, secret=secret, host=hosts[0], port=port, ca=ca_pem, plain=plain
                ).write(path)
                deployment.clients[person] = path
    finally:
        credentials.close()
    return deployment


def load_deployment(root: str | Path) -> Deployment:
    """The files of a deployment `init_deployment` wrote (to run a fleet on it again)."""
    import tomllib

    root = Path(root)
    config = root / "server" / "server.toml"
    try:
        database = tomllib.loads(config.read_text())["database"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        raise InitError(f"{root} holds no deployment oodida init wrote: {exc}") from None
    vehicles = {p.name: p for p in sorted((root / "vehicles").glob("*")) if p.is_dir()}
    clients = {p.stem: p for p in sorted((root / "analysts").glob("*.toml"))}
    return Deployment(root, config, root / "server" / database, root / "ca.pem", vehicles, clients)
