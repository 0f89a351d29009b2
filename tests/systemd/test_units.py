"""The systemd units: `systemd-analyze verify` finds nothing to say, the exposure
scores recorded in the README hold, and every layer of the sandbox worker still
applies under the units' privileges, system call filter and namespace restriction."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNITS = ["oodida-agent.service", "oodida-server.service"]
INSTALLED = "/opt/oodida/bin/oodida"  # ExecStart's binary in the shipped units
LAYERS = [
    "descriptors", "network namespace", "imports", "unprivileged uid", "capabilities", "no_new_privs",
    "not dumpable", "parent death signal", "rlimits", "seccomp",
]

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed on this host"
)


def local_copy(unit: str, tmp_path: Path, text: str | None = None) -> Path:
    """The unit with ExecStart pointing at an `oodida` that exists here (verify checks
    that the binary is executable): a script running this interpreter's oodida."""
    binary = tmp_path / "bin" / "oodida"
    binary.parent.mkdir(exist_ok=True)
    binary.write_text(f'#!/bin/sh\nexec {sys.executable} -m oodida "$@"\n')
    binary.chmod(0o755)
    text = (REPO / "systemd" / unit).read_text() if text is None else text
    assert INSTALLED in text
    path = tmp_path / unit
    path.write_text(text.replace(INSTALLED, str(binary)))
    return path


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=60, check=False)


@needs_analyze
@pytest.mark.parametrize("unit", UNITS)
def test_verify_has_nothing_to_say(unit, tmp_path):
    out = analyze("verify", str(local_copy(unit, tmp_path)))
    # verify exits 0 on unknown keys and bad values too, with a warning: none allowed
    assert out.returncode == 0 and out.stdout == "" and out.stderr == "", out.stdout + out.stderr


@needs_analyze
def test_verify_does_check_what_we_rely_on(tmp_path):
    """The check above can fail: the shipped ExecStart is not installed here, and a
    misspelt setting is reported."""
    shipped = analyze("verify", str(REPO / "systemd" / UNITS[0]))
    assert shipped.returncode != 0 and f"{INSTALLED} is not executable" in shipped.stderr
    text = (REPO / "systemd" / UNITS[0]).read_text().replace("ProtectHome=yes", "ProtectHom=yes")
    typo = analyze("verify", str(local_copy(UNITS[0], tmp_path, text)))
    assert "Unknown key 'ProtectHom'" in typo.stderr


def recorded_scores() -> dict[str, float]:
    """The exposure levels the README records, e.g. '| `oodida-agent.service` | 1.9 OK |'."""
    readme = (REPO / "README.md").read_text()
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"\| `(oodida-\w+\.service)` \| (\d+\.\d) ", readme)}


@needs_analyze
@pytest.mark.parametrize("unit", UNITS)
def test_security_exposure_is_at_most_what_the_readme_records(unit, tmp_path):
    out = analyze("security", "--offline=true", "--no-pager", str(local_copy(unit, tmp_path)))
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d)", out.stdout)
    assert m, out.stdout[-2000:] + out.stderr
    assert unit in recorded_scores(), "record the score in README.md"
    assert float(m.group(1)) <= recorded_scores()[unit]


# --- the sandbox under the units' confinement --------------------------------------------

PROBE = textwrap.dedent("""
    import asyncio, json
    from oodida.sandbox.supervisor import Supervisor

    async def main():
        async with Supervisor() as s:
            print(json.dumps({l.name: [l.applied, l.detail] for l in s.layers}))

    asyncio.run(main())
""")


def _can_confine() -> str | None:
    if os.geteuid() != 0:
        return "needs root, to start the probe as an unprivileged uid with setpriv"
    if shutil.which("setpriv") is None or shutil.which("systemd-analyze") is None:
        return "needs setpriv(1) and systemd-analyze"
    try:
        import pyseccomp  # noqa: F401
    except (ImportError, OSError, RuntimeError):
        return "needs pyseccomp and libseccomp"
    userns = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "unshare", "-Un",
                             "true"], check=False)
    if userns.returncode != 0:
        return "unprivileged user namespaces are off on this kernel: the worker's network namespace cannot apply"
    return None


def layers_under(unit: Path) -> dict[str, tuple[bool, str]]:
    """Start a sandbox worker as the unit would: unprivileged uid (User=), no_new_privs
    (NoNewPrivileges=), an empty bounding set (CapabilityBoundingSet=), the unit's
    SystemCallFilter= and RestrictNamespaces= as seccomp filters (confined.py)."""
    out = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--no-new-privs",
         "--bounding-set=-all", "--inh-caps=-all",
         sys.executable, str(Path(__file__).with_name("confined.py")), unit.read_text(), PROBE],
        capture_output=True, text=True, timeout=120, cwd="/", env={**os.environ, "PYTHONPATH": str(REPO)}, check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return {name: (applied, detail) for name, (applied, detail) in json.loads(out.stdout.splitlines()[-1]).items()}


_NOT_CONFINABLE = _can_confine()
confinable = pytest.mark.skipif(_NOT_CONFINABLE is not None, reason=str(_NOT_CONFINABLE))


@confinable
@pytest.mark.parametrize("unit", UNITS)
def test_every_sandbox_layer_applies_under_the_unit(unit):
    layers = layers_under(REPO / "systemd" / unit)
    assert list(layers) == LAYERS
    assert all(applied for applied, _ in layers.values()), layers
    assert "in a new user namespace" in layers["network namespace"][1]


@confinable
@pytest.mark.parametrize(
    "change, layer",
    [
        (("SystemCallFilter=@system-service seccomp", "SystemCallFilter=@system-service"), "seccomp"),
        (("RestrictNamespaces=user net", "RestrictNamespaces=net"), "network namespace"),
        (("SystemCallFilter=~@resources", "SystemCallFilter=~@privileged @resources"), "capabilities"),
    ],
    ids=["seccomp(2) allowed", "user namespaces allowed", "@privileged (capset) allowed"],
)
def test_what_had_to_stay_open(change, layer, tmp_path):
    """Each opening in the units is needed: close it and that layer fails."""
    old, new = change
    text = (REPO / "systemd" / UNITS[0]).read_text()
    assert old in text
    unit = tmp_path / UNITS[0]
    unit.write_text(text.replace(old, new))
    layers = layers_under(unit)
    assert [name for name, (applied, _) in layers.items() if not applied] == [layer], layers


# --- the whole agent under its unit's confinement ----------------------------------------


@confinable
@pytest.mark.integration
def test_the_agent_runs_a_module_under_its_units_confinement(tmp_path):
    """`oodida agent` as its unit runs it (as far as confined.py goes), a server
    outside: READY, then an analyst's module computed in the sandbox worker."""
    import socket
    import tempfile

    from oodida.testing import LocalFleet
    from oodida.wire.messages import AssignmentSpec, IterationReport, ModuleSource, WindowSpec
    from tests.helpers import run

    shared = Path(tempfile.mkdtemp(prefix="oodida-unit-"))  # readable by the agent's uid
    shared.chmod(0o755)
    # the outbox as under the unit: a relative path, in $STATE_DIRECTORY, the agent's own
    fleet = LocalFleet(tmp_path, vehicles=1, speed=0.0, loop=False, signals=["SPEED"],
                       agent_outbox={"path": "outbox.sqlite3"})
    state = shared / "state"
    state.mkdir(mode=0o700)
    os.chown(state, 65534, 65534)
    config = shared / "agent.toml"
    credentials = fleet.deployment.vehicles["car-1"]  # the vehicle's secret, key and certificates, for its uid
    for name in ("secret", "key.pem", "cert.pem", "ca.pem"):
        shutil.copyfile(credentials / name, shared / name)
        os.chown(shared / name, 65534, 65534)
        (shared / name).chmod(0o600)
    config.write_text(fleet.write_agent_config(0).read_text().replace(str(credentials), str(shared)))
    config.chmod(0o644)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(shared / "notify"))
    (shared / "notify").chmod(0o777)
    notify.settimeout(60)
    snippet = f"import sys\nfrom oodida.cli import main\nsys.exit(main(['agent', '--config', {str(config)!r}]))\n"
    agent = None
    try:
        fleet.start_server()
        with open(tmp_path / "agent.log", "wb") as log:
            agent = subprocess.Popen(
                ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--no-new-privs",
                 "--bounding-set=-all", "--inh-caps=-all", sys.executable,
                 str(Path(__file__).with_name("confined.py")), (REPO / "systemd" / UNITS[0]).read_text(), snippet],
                stdout=log, stderr=subprocess.STDOUT, cwd="/",
                env={**os.environ, "PYTHONPATH": str(REPO), "NOTIFY_SOCKET": str(shared / "notify"),
                     "STATE_DIRECTORY": str(state)},
            )
        assert notify.recv(4096).startswith(b"READY=1\n")
        status = dict(line.split(":", 1) for line in Path(f"/proc/{agent.pid}/status").read_text().splitlines())
        assert status["Uid"].split()[0] == "65534" and status["NoNewPrivs"].strip() == "1"
        assert status["Seccomp"].strip() == "2" and int(status["CapBnd"], 16) == 0  # confined as the unit says
        source = "def on_board(window, params, state):\n    return float(window['SPEED'].v.max())\n"
        spec = AssignmentSpec(
            signals=["SPEED"], window=WindowSpec(amount=50, unit="samples", kind="latest"),
            on_board_module=ModuleSource(name="top.py", source=source), off_board="none", deadline=60.0,
        )

        async def assignment():
            client = await fleet.client()
            try:
                await fleet.wait_connected(client)
                submitted = await client.submit(spec)
                return [r async for r in client.results(submitted.assignment, follow=True)
                        if isinstance(r, IterationReport)]
            finally:
                await client.close()

        (report,) = run(assignment(), timeout=90)
        answer = report.vehicles["car-1"]
        assert answer.ok and answer.value > 0, (answer, (tmp_path / "agent.log").read_text()[-3000:])
        agent.terminate()
        assert agent.wait(30) == 0
        text = (tmp_path / "agent.log").read_text()
        assert "ready: 10 of 10 layers" in text, text[-3000:]
        assert (state / "outbox.sqlite3").stat().st_uid == 65534  # in the state directory, not next to the config
    finally:
        if agent is not None and agent.poll() is None:
            agent.kill()
            agent.wait()
        fleet.stop()
        notify.close()
        shutil.rmtree(shared, ignore_errors=True)
