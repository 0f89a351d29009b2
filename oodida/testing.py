"""A local fleet: one server and N agents, each a real process on loopback.

The demo, the integration tests and the benchmarks all need the same thing: write the
configs, start the processes, wait until every vehicle is connected, and stop every
process again whatever happens (Ctrl-C included). Children also get SIGTERM from the
kernel if this process dies first (PR_SET_PDEATHSIG), so nothing is left behind.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oodida.core.errors import OodidaError

REPO = Path(__file__).resolve().parents[1]
PR_SET_PDEATHSIG = 1


class FleetError(OodidaError):
    """A process of the local fleet did not start or did not become ready."""


def data_dir() -> Path:
    """Where the recorded drive and its DBC are: $OODIDA_DATA, else the repo's data/."""
    path = Path(os.environ.get("OODIDA_DATA", REPO / "data"))
    if not (path / "rav4-2017-comma2k19.log").exists():
        raise FleetError(f"the recorded drive is not in {path}; set OODIDA_DATA to the folder that holds it")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def stop_processes(procs: list[subprocess.Popen[bytes]], timeout: float) -> None:
    """SIGTERM all at once (so they stop in parallel), SIGKILL any still there after
    `timeout` seconds in all; every one reaped."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@dataclass
class LocalFleet:
    workdir: Path
    vehicles: int = 5
    speed: float = 1.0
    loop: bool = True
    offsets: list[float] | None = None  # seconds into the log, per vehicle
    signals: list[str] | None = None  # None: every signal in the DBC
    log_level: str = "info"
    server_options: dict[str, Any] = field(default_factory=dict)
    agent_sandbox: dict[str, Any] = field(default_factory=dict)  # the agents' [sandbox] table
    agent_outbox: dict[str, Any] = field(default_factory=dict)  # more of the agents' [outbox] table
    port: int = field(default_factory=free_port)
    tls: bool = True  # False: plain TCP on loopback (the old way; for comparisons)
    vehicle_certificates: bool = False  # mutual TLS: vehicles must also present their certificate
    metrics: bool = False  # a /metrics page on the server and on every agent, each on a free port
    metrics_ports: dict[str, int] = field(default_factory=dict)  # "server" or a vehicle -> its metrics port
    # vehicles with a credential that never start: an assignment may name them (the server
    # refuses a vehicle it has no credential for), and their iterations stay open
    absent_vehicles: list[str] = field(default_factory=list)
    server: subprocess.Popen[bytes] | None = None
    agents: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        data = data_dir()
        self.log_path = data / "rav4-2017-comma2k19.log"
        self.dbc_path = data / "toyota_rav4_2017.dbc"
        self.deployment = self._credentials()

    def _credentials(self) -> Any:
        """`oodida init`'s own code: a CA, certificates for 127.0.0.1 and localhost,
        a credential per vehicle, an analyst ("demo") and a reader ("viewer"), hashed
        into the server's database. Once per work directory (a second fleet on the
        same directory, as after a restart, reuses them)."""
        from oodida.server.init import init_deployment, load_deployment  # the harness is not part of the agent

        pki = self.workdir / "pki"
        if pki.exists():
            return load_deployment(pki)
        return init_deployment(
            pki, vehicles=[*self.vehicle_ids, *self.absent_vehicles], analysts=["demo"], readers=["viewer"],
            hosts=["127.0.0.1", "localhost"], port=self.port, database=str(self.workdir / "server.sqlite3"),
            plain=not self.tls,
        )

    @property
    def analyst_credentials(self) -> Path:
        """The analyst's credential file (for `oodida ... --credentials`)."""
        return Path(self.deployment.clients["demo"])

    @property
    def reader_credentials(self) -> Path:
        return Path(self.deployment.clients["viewer"])

    @property
    def vehicle_ids(self) -> list[str]:
        return [f"car-{i + 1}" for i in range(self.vehicles)]

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        out = open(self.workdir / f"{name}.log", "ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OODIDA_TOKEN", "OODIDA_CREDENTIALS"))}
        try:
            return subprocess.Popen(
                [sys.executable, "-m", "oodida", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
                env=env,
            )
        finally:
            out.close()

    def write_server_config(self) -> Path:
        path = self.workdir / "server.toml"
        extra = "".join(f"{k} = {_toml_value(v)}\n" for k, v in self.server_options.items())
        path.write_text(
            f'database = "server.sqlite3"\n{extra}\n'
            f'[listen]\nhost = "127.0.0.1"\nport = {self.port}\n{self._server_transport()}'
            + self._metrics_table("server")
        )
        return path

    def _server_transport(self) -> str:
        if not self.tls:
            return "plain = true\n"
        d = self.deployment.server_config.parent
        return (
            f'\n[tls]\ncert = "{d / "server.pem"}"\nkey = "{d / "server.key"}"\nclient_ca = "{d / "ca.pem"}"\n'
            f"vehicle_certificates = {'true' if self.vehicle_certificates else 'false'}\n"
        )

    def _agent_link(self, vehicle: str) -> str:
        """The [server] keys that say how to reach and prove: absolute paths, so a
        config copied elsewhere (the systemd tests do) still works."""
        d = self.deployment.vehicles[vehicle]
        keys = f'secret_file = "{d / "secret"}"\n'
        if not self.tls:
            return keys + "plain = true\n"
        return keys + f'ca = "{d / "ca.pem"}"\ncert = "{d / "cert.pem"}"\nkey = "{d / "key.pem"}"\n'

    def write_agent_config(self, index: int, **source: Any) -> Path:
        vehicle = self.vehicle_ids[index]
        offsets = self.offsets if self.offsets is not None else [i * 11.0 for i in range(self.vehicles)]
        options: dict[str, Any] = {
            "path": str(self.log_path),
            "dbc": str(self.dbc_path),
            "channel": "can0",
            "speed": self.speed,
            "offset": offsets[index],
            "loop": self.loop,
        }
        if self.signals is not None:
            options["signals"] = self.signals
        options.update(source)
        lines = "".join(f"{k} = {_toml_value(v)}\n" for k, v in options.items())
        path = self.workdir / f"{vehicle}.toml"
        path.write_text(
            f'vehicle = "{vehicle}"\nlog_level = "{self.log_level}"\n\n'
            f'[server]\nhost = "127.0.0.1"\nport = {self.port}\n{self._agent_link(vehicle)}'
            f"backoff_min = 0.1\nbackoff_max = 2.0\nstatus_interval = 0.5\n\n"
            f'[[sources]]\nkind = "log"\n{lines}'
            + ("\n[sandbox]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in self.agent_sandbox.items())
               if self.agent_sandbox else "")
            + self._outbox_table(vehicle)
            + self._metrics_table(vehicle)
        )
        return path

    def _metrics_table(self, name: str) -> str:
        if not self.metrics:
            return ""
        port = self.metrics_ports.setdefault(name, free_port())
        return f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n'

    def metrics_url(self, name: str = "server") -> str:
        """The /metrics page of the server or of a vehicle's agent (with `metrics`)."""
        return f"http://127.0.0.1:{self.metrics_ports[name]}/metrics"

    def outbox_path(self, vehicle: str) -> Path:
        """Each agent's own outbox file, in the workdir (two agents cannot share one)."""
        return self.workdir / f"{vehicle}.outbox.sqlite3"

    def _outbox_table(self, vehicle: str) -> str:
        options = {"path": str(self.outbox_path(vehicle)), **self.agent_outbox}
        return "\n[outbox]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in options.items())

    def start_server(self) -> None:
        config = self.write_server_config()
        self.server = self._spawn("server", ["server", "--config", str(config), "--log-level", self.log_level])

    def start_agent(self, index: int, **source: Any) -> str:
        vehicle = self.vehicle_ids[index]
        config = self.write_agent_config(index, **source)
        self.agents[vehicle] = self._spawn(vehicle, ["agent", "--config", str(config)])
        return vehicle

    def start(self) -> None:
        self.start_server()
        for i in range(self.vehicles):
            self.start_agent(i)

    def kill_agent(self, vehicle: str, sig: int = signal.SIGKILL) -> None:
        proc = self.agents[vehicle]
        proc.send_signal(sig)
        proc.wait(10)

    async def client(self, timeout: float = 30.0) -> Any:
        """An analyst client, once the server accepts connections."""
        from oodida.client.protocol import AnalystClient  # the fleet harness is not part of the agent
        from oodida.link import ChannelError

        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            try:
                return await AnalystClient.from_file(self.analyst_credentials, server=("127.0.0.1", self.port))
            except ChannelError:
                if time.monotonic() > deadline:
                    raise FleetError(
                        f"server did not accept connections within {timeout} s; see {self.workdir}/server.log"
                    ) from None
                await asyncio.sleep(0.1)

    async def wait_connected(self, client: Any, vehicles: list[str] | None = None, timeout: float = 60.0) -> None:
        """Until every given vehicle is connected and has reported its status."""
        wanted = set(vehicles if vehicles is not None else self.vehicle_ids)
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive(wanted)
            status = await client.status()
            ready = {v.vehicle for v in status.vehicles if v.status is not None}
            if wanted <= ready:
                return
            if time.monotonic() > deadline:
                raise FleetError(f"vehicles not connected within {timeout} s: {sorted(wanted - ready)}")
            await asyncio.sleep(0.1)

    def _check_alive(self, vehicles: set[str] | None = None) -> None:
        """Fail fast, with the process's last words, when one we wait for has exited."""
        procs = {"server": self.server} if self.server is not None else {}
        procs.update({v: p for v, p in self.agents.items() if vehicles is None or v in vehicles})
        for name, proc in procs.items():
            if proc.poll() is not None:
                log = self.workdir / f"{name}.log"
                last = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
                raise FleetError(f"{name} exited with {proc.returncode}: {' '.join(last)} (see {log})")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every process: SIGTERM, then SIGKILL for any that lingers."""
        stop_processes([p for p in [*self.agents.values(), self.server] if p is not None], timeout)

    def __enter__(self) -> LocalFleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
