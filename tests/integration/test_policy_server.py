"""The policy check against a real server and real agents: a hostile module holds up
nobody else, its refusal fits the protocol, and text from modules reaches no
terminal and no log as control characters."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from oodida.client.protocol import RequestFailed
from oodida.testing import LocalFleet
from oodida.wire.messages import AssignmentSpec, ModuleSource, WindowSpec
from tests.fleets import FleetSpec, start_replayed
from tests.helpers import run

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = ROOT / "tests" / "sandbox" / "hostile"
HEAD = "import numpy as np\n\ndef on_board(window, params, state):\n    return 1\n"
SHAPES = {  # 250 KB modules that took the server's event loop for tens of seconds
    "underscore lines": HEAD + "_a=1\n" * 50_000,
    "one line of names": HEAD + "x = [" + "a," * 124_000 + "]\n",
    "forbidden attributes": HEAD + "np.load\n" * 9_900,
    "a long string": HEAD + "x = '" + "a" * 250_000 + "'\n",
    "calls": HEAD + "f(x.y[1]); " * 9_000 + "\n",
}
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")  # any control character but tab and newline


FLEET = FleetSpec.of("policy", start_replayed, vehicles=1, speed=0.0, loop=False, signals=["SPEED"])


async def status_latencies_during(fleet: LocalFleet, source: str) -> tuple[list[float], str | None]:
    """Another analyst's status round trips while the hostile module is submitted;
    and the submit's refusal (None if it was accepted)."""
    hostile, other = await fleet.client(), await fleet.client()
    try:
        await other.status()  # connected and warm
        spec = AssignmentSpec(signals=["SPEED"], window=WindowSpec(amount=1.0, kind="latest"),
                              on_board_module=ModuleSource(name="hostile.py", source=source))
        submit = asyncio.ensure_future(hostile.submit(spec))
        latencies = []
        while not submit.done() or not latencies:
            started = time.monotonic()
            await other.status()
            latencies.append(time.monotonic() - started)
        try:
            submitted = await submit
        except RequestFailed as exc:
            return latencies, exc.reason
        await hostile.cancel(submitted.assignment)
        return latencies, None
    finally:
        await hostile.close()
        await other.close()


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_a_hostile_module_holds_up_no_other_analyst(fleet, shape):
    source = SHAPES[shape]
    assert 240_000 <= len(source.encode()) <= 256 * 1024 or shape in ("forbidden attributes", "calls")
    latencies, reason = run(status_latencies_during(fleet, source), timeout=120)
    print(f"{shape}: {len(latencies)} status answers while the submit was checked, the slowest in "
          f"{max(latencies) * 1000:.1f} ms")
    assert max(latencies) <= 0.100, f"{shape}: another analyst's status took {max(latencies) * 1000:.0f} ms"
    if shape == "a long string":
        assert reason is None  # plain data in a module is no refusal
        return
    assert reason is not None and len(reason) <= 4096, reason
    assert reason.startswith("the module breaks the sandbox policy:")
    if shape == "forbidden attributes":  # 9,900 problems, cut to the first ones and a count
        assert re.search(r"\n\.\.\. and \d+ more$", reason), reason[-200:]
        assert "hostile.py: line 5: forbidden attribute: numpy.load is not available" in reason
    else:
        assert "module too large" in reason


def test_oodida_check_on_the_hostile_modules_is_fast_and_clear(tmp_path):
    for shape, source in SHAPES.items():
        path = tmp_path / f"{shape.replace(' ', '_')}.py"
        path.write_text(source)
        started = time.monotonic()
        out = subprocess.run([sys.executable, "-m", "oodida", "check", str(path)], capture_output=True, text=True,
                             timeout=60)
        took = time.monotonic() - started
        assert out.returncode == (0 if shape == "a long string" else 1), out
        assert "Traceback" not in out.stderr
        assert len(out.stdout.splitlines()) <= 50, shape  # the problems are capped, the last counts the rest
        print(f"oodida check, {shape}: {took:.2f} s")  # was more than 60 s for 250 KB


@pytest.mark.timeout(90)
async def test_text_from_modules_reaches_no_terminal_and_no_log_raw(fleet, tmp_path):
    returned = (HOSTILE / "224_control_characters_returned.py").read_text()
    raising = ("def off_board(results, params, state):\n"
               "    raise ValueError('\\x1b[2J\\n2026-01-01 00:00:00,000 CRITICAL server: forged record')\n")

    client = await fleet.client()
    try:
        spec = AssignmentSpec(signals=["SPEED"], window=WindowSpec(amount=1.0, kind="latest"), iterations=1,
                              on_board_module=ModuleSource(name="returns.py", source=returned),
                              off_board_module=ModuleSource(name="raises.py", source=raising), deadline=30)
        submitted = await client.submit(spec)
        items = [r async for r in client.results(submitted.assignment, follow=True)]
        assignment, items = submitted.assignment, items
    finally:
        await client.close()
    [vehicle] = fleet.vehicle_ids
    report = items[0]
    assert report.vehicles[vehicle].ok  # the value is data, stored as it is
    assert "\x1b[2J\nCRITICAL x" in report.vehicles[vehicle].value
    out = await asyncio.to_thread(subprocess.run,
        [sys.executable, "-m", "oodida", "results", str(assignment), "--server", f"127.0.0.1:{fleet.port}",
         "--credentials", str(fleet.analyst_credentials)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    shown = out.stdout + out.stderr
    assert not CONTROL.search(shown), repr(shown)
    assert "\\x1b[2J\\nCRITICAL x" in shown  # escaped, not dropped
    assert not any(line.startswith(("CRITICAL", "2026-01-01")) for line in shown.splitlines())
    logs = [fleet.workdir / "server.log", *sorted(fleet.workdir.glob("agent*.log"))]
    assert (fleet.workdir / "server.log").exists()
    server_log = (fleet.workdir / "server.log").read_text()
    assert "forged record" in server_log  # the off-board failure is logged, quoted
    for log in logs:
        text = log.read_text()
        assert not CONTROL.search(text), f"{log.name}: {CONTROL.search(text)}"
        assert not any(line.startswith("2026-01-01 00:00:00,000 CRITICAL") for line in text.splitlines()), log


def test_try_shows_what_a_module_returns_and_raises_escaped(tmp_path):
    data = ROOT / "data"
    for name in ("224_control_characters_returned.py", "225_control_characters_raised.py"):
        out = subprocess.run(
            [sys.executable, "-m", "oodida", "try", str(HOSTILE / name), "--log", str(data / "rav4-2017-comma2k19.log"),
             "--dbc", str(data / "toyota_rav4_2017.dbc"), "--channel", "can0", "--signals", "SPEED",
             "--window", "2s"], capture_output=True, text=True, timeout=120)
        assert out.returncode == (0 if name.startswith("224") else 1), out.stderr
        shown = out.stdout + out.stderr
        assert not CONTROL.search(shown), repr(shown)
        # escaped, not dropped: as JSON escapes it (--json) or as the report's renderer does
        assert any(form in shown for form in ("\\u001b[2J\\nCRITICAL x", "\\x1b[2J\\nCRITICAL x",
                                               "\\x1b[2J\\n2026-01-01")), shown
