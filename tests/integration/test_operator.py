"""The operator's usual mistakes, made on purpose against real processes.

Every case starts `oodida server`, `oodida agent` and the analyst's commands as
subprocesses, with a deployment written by `oodida init`, and reads what an operator
would see: the exit status and standard error. The rule in each: one line that names
the file (or the address, or the vehicle) and the reason, exit 2 for a configuration
error and 1 for a run-time failure, and never a traceback on the terminal.

No marker: these run in every `pytest` run, and each case takes a few seconds.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import DBC, LOG

OODIDA = [sys.executable, "-m", "oodida"]
VEHICLES = ("car-1", "car-2")


class Proc:
    """A process whose stdout and stderr are read as they come, line by line."""

    def __init__(self, args: list[str], *, env: dict[str, str] | None = None, prefix: list[str] = ()) -> None:
        self.args = args
        self.popen = subprocess.Popen(
            [*prefix, *OODIDA, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **(env or {})},
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(self.popen.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.popen.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, lines: list[str]) -> None:
        for line in stream:
            with self._changed:
                lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def stderr(self) -> str:
        with self._changed:
            return "".join(self.err)

    @property
    def stdout(self) -> str:
        with self._changed:
            return "".join(self.out)

    def wait_for(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """The first stderr line matching `pattern`, waiting up to `timeout` s for it."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.err:
                    if m := regex.search(line):
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or (self.popen.poll() is not None and not any(r.is_alive() for r in self._readers)):
                    raise AssertionError(f"no line matching {pattern!r} from {self.args}; stderr:\n{''.join(self.err)}")
                self._changed.wait(min(left, 0.2))

    def count(self, pattern: str) -> int:
        regex = re.compile(pattern)
        with self._changed:
            return sum(1 for line in self.err if regex.search(line))

    def wait(self, timeout: float = 20.0) -> int:
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.args} still running after {timeout} s; stderr:\n{self.stderr}") from None
        self._close()
        return code

    def _close(self) -> None:
        for reader in self._readers:
            reader.join(5)
        for stream in (self.popen.stdout, self.popen.stderr):
            if stream is not None and not stream.closed and not any(r.is_alive() for r in self._readers):
                stream.close()

    def stop(self) -> int | None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._close()
        return self.popen.returncode


def run_cli(*args: str, timeout: float = 30.0, prefix: list[str] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, *OODIDA, *args], capture_output=True, text=True, timeout=timeout)


def no_traceback(text: str) -> None:
    assert "Traceback" not in text, text


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """One `oodida init` per module; each test works on its own copy."""
    root = tmp_path_factory.mktemp("operator") / "deployment"
    out = run_cli("init", str(root), "--vehicles", ",".join(VEHICLES), "--analysts", "alice",
                  "--host", "127.0.0.1,localhost")
    assert out.returncode == 0, out.stderr
    return root


class Deployment:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.server_config = root / "server" / "server.toml"
        self.database = root / "server" / "oodida-server.sqlite3"
        self.alice = root / "analysts" / "alice.toml"
        self.procs: list[Proc] = []

    def set_server(self, text: str, where: str = "top") -> None:
        """Add lines to server.toml at the top (before its first table)."""
        config = self.server_config.read_text()
        self.server_config.write_text(text + "\n" + config if where == "top" else config + "\n" + text + "\n")

    def server_port(self, port: int) -> None:
        config = self.server_config.read_text()
        self.server_config.write_text(re.sub(r"(?m)^port = \d+$", f"port = {port}", config))

    def start_server(self, *args: str, wait: bool = True, prefix: list[str] = ()) -> tuple[Proc, int]:
        proc = Proc(["server", "--config", str(self.server_config), *args], prefix=prefix)
        self.procs.append(proc)
        if not wait:
            return proc, 0
        port = int(proc.wait_for(r"listening on 127\.0\.0\.1:(\d+)").group(1))
        return proc, port

    def agent_config(self, vehicle: str, port: int, *, name: str = "run.toml", extra_server: str = "",
                     sources: str | None = None, outbox: str | None = None) -> Path:
        folder = self.root / "vehicles" / vehicle
        text = (folder / "agent.toml").read_text()
        text = re.sub(r"(?m)^port = \d+$", f"port = {port}", text)
        text = text.replace("[server]\n", "[server]\nbackoff_min = 0.1\nbackoff_max = 1.0\n" + extra_server, 1)
        if sources is None:
            sources = (f'[[sources]]\nkind = "log"\npath = "{LOG}"\ndbc = "{DBC}"\nchannel = "can0"\n'
                       'signals = ["SPEED"]\nloop = true\n')
        text += "\n" + sources + f'\n[outbox]\npath = "{outbox or name + ".outbox.sqlite3"}"\n'
        path = folder / name
        path.write_text(text)
        return path

    def start_agent(self, config: Path, *args: str) -> Proc:
        proc = Proc(["agent", "--config", str(config), *args])
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            proc.stop()


@pytest.fixture
def dep(template, tmp_path) -> Deployment:
    root = tmp_path / "deployment"
    shutil.copytree(template, root)
    deployment = Deployment(root)
    deployment.server_port(0)
    yield deployment
    deployment.stop_all()


def fill(database: Path, rows: int = 2000) -> None:
    """Make the database many pages long, as a server that ran for a while leaves it."""
    db = sqlite3.connect(database)
    db.executemany(  # a fleet's credentials (never used to connect: the keys are not real)
        "INSERT INTO credentials (identity, role, salt, iterations, stored_key, server_key, created)"
        " VALUES (?, 'vehicle', ?, 4096, ?, ?, ?)",
        [(f"fleet-{i}", os.urandom(16), os.urandom(32), os.urandom(32), time.time()) for i in range(rows)],
    )
    db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def page_of(database: Path, table: str) -> tuple[int, int]:
    """(root page number, page size) of a table."""
    db = sqlite3.connect(database)
    try:
        root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
        size = db.execute("PRAGMA page_size").fetchone()[0]
    finally:
        db.close()
    return root, size


def scribble(database: Path, page: int, size: int) -> None:
    """Overwrite one page (1-based) with garbage, as a failing disk or a stray write would."""
    with open(database, "r+b") as f:
        f.seek((page - 1) * size)
        f.write(bytes((i * 37 + 11) % 251 for i in range(size)))


def refused_at_start(proc: Proc, *names: str, code: int = 2) -> str:
    assert proc.wait() == code, proc.stderr
    err = proc.stderr
    no_traceback(err)
    for name in names:
        assert name in err, err
    assert "listening on" not in err, err
    return err


# --- the server's database ---------------------------------------------------------


def test_a_database_truncated_to_nothing_is_refused_at_start_with_exit_2(dep):
    dep.database.write_bytes(b"")  # what a full disk, a bad copy or a truncating editor leaves
    proc, _ = dep.start_server(wait=False)
    err = refused_at_start(proc, str(dep.database))
    assert "empty" in err and "0 bytes" in err, err


def test_a_database_cut_short_is_refused_at_start_with_exit_2(dep):
    fill(dep.database)
    size = dep.database.stat().st_size
    with open(dep.database, "r+b") as f:
        f.truncate(size // 2)
    proc, _ = dep.start_server(wait=False)
    err = refused_at_start(proc, str(dep.database))
    assert "truncated" in err, err


def test_a_database_corrupt_in_the_middle_is_refused_at_start_with_exit_2(dep):
    fill(dep.database)
    root, size = page_of(dep.database, "credentials")
    scribble(dep.database, root, size)
    proc, _ = dep.start_server(wait=False)
    err = refused_at_start(proc, str(dep.database))
    assert "corrupt" in err, err
    assert "integrity check" in err, err


def test_the_refusal_has_its_traceback_in_the_debug_log_only(dep):
    dep.database.write_bytes(b"SQLite format 3\0" + b"\xff" * 200)
    proc, _ = dep.start_server("--log-level", "debug", wait=False)
    assert proc.wait() == 2
    assert str(dep.database) in proc.stderr
    assert "Traceback" in proc.stderr  # the debug log holds the whole story


def test_a_file_that_is_not_a_database_is_refused_with_one_line_and_exit_2(dep):
    dep.database.write_text("this is the operator's notes file, not a database\n" * 20)
    proc, _ = dep.start_server(wait=False)
    err = refused_at_start(proc, str(dep.database))
    assert "not an SQLite database" in err, err
    assert len([line for line in err.splitlines() if line.strip()]) == 1, err


def _as_nobody() -> list[str]:
    """Run as an unprivileged uid when we are root (root writes read-only files)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root and setpriv is missing (apt-get install util-linux)")
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def test_a_read_only_database_is_refused_with_one_line_and_exit_2(dep, tmp_path):
    prefix = _as_nobody()
    for path in [tmp_path, *tmp_path.rglob("*")]:  # readable by all, written by nobody but its owner
        path.chmod(path.stat().st_mode | 0o444 | (0o111 if path.is_dir() else 0))
    dep.database.chmod(0o444)
    for parent in [tmp_path, *tmp_path.parents]:
        if parent == Path("/"):
            break
        parent.chmod(parent.stat().st_mode | 0o011)
    proc, _ = dep.start_server(wait=False, prefix=prefix)
    err = refused_at_start(proc, str(dep.database))
    assert "read-only" in err or "cannot write" in err, err
    assert len([line for line in err.splitlines() if line.strip()]) == 1, err


def test_corruption_found_while_running_is_logged_once_and_the_server_stops_with_exit_1(dep):
    fill(dep.database)
    proc, port = dep.start_server()
    root, size = page_of(dep.database, "credentials")
    scribble(dep.database, root, size)  # the server read none of it yet: the next handshake does
    outcomes = [run_cli("status", "--credentials", str(dep.alice), "--server", f"127.0.0.1:{port}")
                for _ in range(2)]
    assert proc.wait(20) == 1, proc.stderr
    err = proc.stderr
    no_traceback(err)
    assert proc.count(r"is corrupt") == 1, err
    assert str(dep.database) in err, err
    first = outcomes[0]
    assert first.returncode == 1, first.stderr
    no_traceback(first.stderr)
    assert "database" in first.stderr, first.stderr


# --- the listening port --------------------------------------------------------------


def test_a_port_in_use_names_the_address_and_the_pid_with_exit_2(dep):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        dep.server_port(port)
        proc, _ = dep.start_server(wait=False)
        err = refused_at_start(proc, f"127.0.0.1:{port} is in use")
    assert f"pid {os.getpid()}" in err, err
    assert len([line for line in err.splitlines() if "ERROR" in line or "in use" in line]) == 1, err


# --- two agents with the same vehicle id ---------------------------------------------


def test_a_second_agent_with_the_same_vehicle_id_is_refused_with_the_reason_and_does_not_flap(dep):
    server, port = dep.start_server()
    first = dep.start_agent(dep.agent_config("car-1", port))
    first.wait_for(r"connected to 127\.0\.0\.1")
    server.wait_for(r"vehicle car-1 connected from")
    second = dep.start_agent(dep.agent_config("car-1", port, name="copy.toml"))
    reason = second.wait_for(r"car-1 is already connected from 127\.0\.0\.1:\d+ since \S+")
    server.wait_for(r"car-1 is already connected from")
    time.sleep(4)  # a second agent that flapped would log it every time (52 times in 10 s once)
    assert second.count(r"already connected") == 1, second.stderr
    assert server.count(r"already connected") == 1, server.stderr
    assert first.count(r"another agent") == 1, first.stderr  # the connected one is told, once
    assert first.count(r"lost the server") == 0, first.stderr
    assert second.count(r"connected to 127") == 0, second.stderr
    assert server.count(r"vehicle car-1 connected from") == 1, server.stderr
    assert "retrying" in reason.string
    for proc in (first, second, server):
        no_traceback(proc.stderr)
    first.stop()  # once the first is gone, the second gets in
    second.wait_for(r"connected to 127\.0\.0\.1", timeout=20)


def test_takeover_lets_the_newest_agent_in_and_tells_the_old_one(dep):
    dep.set_server('duplicate_vehicle = "takeover"')
    server, port = dep.start_server()
    first = dep.start_agent(dep.agent_config("car-1", port))
    first.wait_for(r"connected to 127\.0\.0\.1")
    second = dep.start_agent(dep.agent_config("car-1", port, name="copy.toml"))
    second.wait_for(r"connected to 127\.0\.0\.1")
    first.wait_for(r"replaced by a new connection")
    server.wait_for(r"vehicle car-1 connected again from .*takeover")
    for proc in (first, second, server):
        no_traceback(proc.stderr)


def test_an_unknown_duplicate_vehicle_setting_is_a_config_error(dep):
    dep.set_server('duplicate_vehicle = "both"')
    proc, _ = dep.start_server(wait=False)
    refused_at_start(proc, "duplicate_vehicle", str(dep.server_config))


# --- submit --------------------------------------------------------------------------


def test_a_submit_naming_vehicles_without_a_credential_is_refused_naming_them(dep):
    server, port = dep.start_server()
    agent = dep.start_agent(dep.agent_config("car-1", port))
    agent.wait_for(r"connected to 127\.0\.0\.1")
    common = ["--credentials", str(dep.alice), "--server", f"127.0.0.1:{port}", "--signals", "SPEED",
              "--window", "1samples", "--iterations", "1", "--on-board", "count", "--deadline", "30"]
    start = time.monotonic()
    out = run_cli("submit", "--vehicles", "car-1,car-9,truck-7", *common)
    assert time.monotonic() - start < 15  # at once, not after the deadline
    assert out.returncode == 1, out.stderr
    no_traceback(out.stderr)
    assert "car-9" in out.stderr and "truck-7" in out.stderr, out.stderr
    assert "car-1" not in out.stderr.replace("car-9", ""), out.stderr
    ok = run_cli("submit", "--vehicles", "car-1,car-2", *common)  # car-2 is known, only offline
    assert ok.returncode == 0, ok.stderr
    assert "started on 2 vehicles" in ok.stdout


# --- a server that accepts TCP and never answers -------------------------------------


def test_a_server_that_never_answers_gets_a_reason_in_the_cli_and_the_agent(dep):
    with socket.socket() as deaf:  # the kernel completes TCP handshakes; nobody ever reads
        deaf.bind(("127.0.0.1", 0))
        deaf.listen(64)
        port = deaf.getsockname()[1]
        agent = dep.start_agent(dep.agent_config("car-1", port, extra_server="connect_timeout = 1.0\n"))
        out = run_cli("status", "--credentials", str(dep.alice), "--server", f"127.0.0.1:{port}")
        assert out.returncode == 1, out.stderr
        no_traceback(out.stderr)
        assert f"127.0.0.1:{port}" in out.stderr and "no TLS handshake answer in 10 s" in out.stderr, out.stderr
        agent.wait_for(rf"127\.0\.0\.1:{port}: no TLS handshake answer in 1 s")
        agent.stop()
        no_traceback(agent.stderr)


# --- configuration errors: exit 2, every loader; run-time failures: exit 1 ---------------


SERVER_MISTAKES = {
    "not TOML": ("database = \n", "not valid TOML"),
    "unknown key": ("databse = \"x.sqlite3\"\n", "databse"),
}


@pytest.mark.parametrize("mistake", sorted(SERVER_MISTAKES))
def test_server_config_errors_exit_2_for_the_server_and_the_credentials_command(dep, mistake):
    text, expected = SERVER_MISTAKES[mistake]
    dep.set_server(text)
    for args in (["server", "--config", str(dep.server_config)],
                 ["credentials", "list", "--config", str(dep.server_config)]):
        out = run_cli(*args)
        assert out.returncode == 2, (args, out.stderr)
        no_traceback(out.stderr)
        assert expected in out.stderr and str(dep.server_config) in out.stderr, out.stderr


def test_the_credentials_command_on_a_corrupt_database_exits_2_with_one_line(dep):
    dep.database.write_text("not a database\n" * 100)
    out = run_cli("credentials", "list", "--config", str(dep.server_config))
    assert out.returncode == 2, out.stderr
    no_traceback(out.stderr)
    assert str(dep.database) in out.stderr and "not an SQLite database" in out.stderr, out.stderr


def _log_source(**keys: str) -> str:
    options = {"path": f'"{LOG}"', "dbc": f'"{DBC}"', "channel": '"can0"', **keys}
    return '[[sources]]\nkind = "log"\n' + "".join(f"{k} = {v}\n" for k, v in options.items())


AGENT_MISTAKES = {
    "missing dbc": (_log_source(dbc='"nowhere.dbc"'), "nowhere.dbc"),
    "not a dbc": (_log_source(dbc=f'"{LOG}"'), "cannot parse DBC"),
    "missing log": (_log_source(path='"nowhere.log"'), "nowhere.log"),
    "unknown signal": (_log_source(signals='["NO_SUCH_SIGNAL"]'), "NO_SUCH_SIGNAL"),
    "signal twice": (_log_source(signals='["SPEED", "SPEED.SPEED"]'), "twice"),
    "no such channel": (_log_source(channel='"can7"'), "can7"),
    "offset past the end": (_log_source(offset="3600.0"), "offset"),
    "unknown interface": (f'[[sources]]\nkind = "bus"\ninterface = "nosuchcan"\nchannel = "x"\ndbc = "{DBC}"\n',
                          "nosuchcan"),
    "unknown key": (_log_source(sped="1.0"), "sped"),
}


@pytest.mark.parametrize("mistake", sorted(AGENT_MISTAKES))
def test_agent_config_errors_exit_2_with_one_line(dep, mistake):
    sources, expected = AGENT_MISTAKES[mistake]
    config = dep.agent_config("car-1", 7400, sources=sources)
    out = run_cli("agent", "--config", str(config))
    assert out.returncode == 2, out.stderr
    no_traceback(out.stderr)
    assert expected in out.stderr, out.stderr
    errors = [line for line in out.stderr.splitlines() if "ERROR" in line or line.startswith("oodida agent:")]
    assert len(errors) == 1, out.stderr


def test_an_agent_whose_can_device_cannot_be_opened_is_a_run_time_failure_exit_1(dep):
    """A CAN interface that exists but whose device is absent now (an adapter not
    plugged in, a bus not up yet) is not the configuration's fault: exit 1, so systemd
    restarts the agent later (2 would stop it for good)."""
    sources = f'[[sources]]\nkind = "bus"\ninterface = "socketcan"\nchannel = "nosuchcan0"\ndbc = "{DBC}"\n'
    config = dep.agent_config("car-1", 7400, sources=sources)
    out = run_cli("agent", "--config", str(config))
    assert out.returncode == 1, out.stderr
    no_traceback(out.stderr)
    assert "nosuchcan0" in out.stderr, out.stderr
