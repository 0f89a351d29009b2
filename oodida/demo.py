"""`oodida demo`: a local fleet on a real drive, and three assignments on it.

Five agents replay the same recorded RAV4 drive from different offsets (so each
"vehicle" sees different road), a server gathers them, and the demo submits:
1. statistics of speed and steering angle, 3 iterations of the next 5 s of driving;
2. federated k-means on (speed, steering angle), 4 iterations over the latest 20 s,
   where each iteration's centroids go to the vehicles with the next task;
3. an analyst's own module (examples/speeding.py), run in every agent's sandbox on
   board and in the server's off board; after its second iteration the demo deploys
   version 2 (examples/speeding_v2.py) into the running assignment, as
   `oodida deploy` does: no process restarts, the iteration in flight finishes with
   version 1, the next ones run version 2, and the version table says which ran when.
Every process is stopped at the end, on error and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

from oodida.client.protocol import AnalystClient, RequestFailed
from oodida.commands.assignments import follow_results
from oodida.commands.deploy import render_deploy_event, render_versions
from oodida.core.logs import setup_logging
from oodida.core.suggest import SuggestingParser
from oodida.testing import FleetError, LocalFleet, stop_processes
from oodida.wire.messages import AssignmentSpec, IterationReport, ModuleSource, WindowSpec

SIGNALS = ["SPEED", "STEER_ANGLE_SENSOR.STEER_ANGLE"]

STATS = AssignmentSpec(
    name="speed and steering",
    signals=["SPEED", "STEER_ANGLE_SENSOR.STEER_ANGLE"],
    window=WindowSpec(amount=5.0, unit="s", kind="next"),
    iterations=3,
    on_board=["count", "mean", "std", "min", "max", "histogram"],
    params={
        "bins": {
            "SPEED": {"count": 12, "range": [0.0, 120.0]},
            "STEER_ANGLE_SENSOR.STEER_ANGLE": {"count": 12, "range": [-30.0, 30.0]},
        }
    },
    deadline=30.0,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SPEEDING_MODULE = EXAMPLES / "speeding.py"
DEPLOY_AFTER = 2  # iterations of the speeding assignment before version 2 is deployed


def speeding() -> AssignmentSpec:
    """The analyst's own module (examples/speeding.py), on board and off board, in the sandbox."""
    module = ModuleSource(name="speeding.py", source=SPEEDING_MODULE.read_text())
    return AssignmentSpec(
        name="speeding (your own module)",
        signals=["SPEED"],
        window=WindowSpec(amount=3.0, unit="s", kind="next"),
        iterations=5,
        on_board_module=module,
        off_board_module=module,
        params={"limit": 65.0},
        deadline=30.0,
    )


KMEANS = AssignmentSpec(
    name="driving modes",
    signals=["SPEED", "STEER_ANGLE_SENSOR.STEER_ANGLE"],
    window=WindowSpec(amount=20.0, unit="s", kind="latest"),
    iterations=4,
    on_board=["kmeans"],
    params={"k": 3},
    deadline=30.0,
)


def start_dashboard(fleet: LocalFleet, say: Any) -> subprocess.Popen[str]:
    """`oodida dashboard` beside the demo's fleet, on a free loopback port; says where,
    and with which of the demo's credentials to sign in."""
    ca = fleet.deployment.server_config.parent / "ca.pem"
    proc = subprocess.Popen(
        [sys.executable, "-m", "oodida", "dashboard", "--listen", "127.0.0.1:0", "--server", f"127.0.0.1:{fleet.port}",
         "--ca", str(ca)],
        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )
    assert proc.stdout is not None
    with proc.stdout:
        line = proc.stdout.readline().strip()
    if not line:
        raise FleetError("the dashboard did not start")
    say(line)
    for who, path in (("analyst", fleet.analyst_credentials), ("reader", fleet.reader_credentials)):
        creds = tomllib.loads(Path(path).read_text())
        say(f"  sign in as {creds['identity']} ({who}) with the demo's secret {creds['secret']}")
    say("")
    return proc


async def run_demo(fleet: LocalFleet, as_json: bool, dashboard: bool = False) -> int:
    say = (lambda *a: None) if as_json else print
    say(f"starting a server and {fleet.vehicles} agents (logs in {fleet.workdir}) ...")
    say(f"  {'TLS' if fleet.tls else 'plain TCP'} on loopback; CA and credentials from oodida init's code in "
        f"{fleet.workdir / 'pki'}")
    started = time.monotonic()
    fleet.start()
    client = await fleet.client()
    web = None
    try:
        await fleet.wait_connected(client)
        say(f"{fleet.vehicles} vehicles connected in {time.monotonic() - started:.1f} s\n")
        if dashboard:
            web = start_dashboard(fleet, say)
        ok = True
        for spec in (STATS, KMEANS, speeding()):
            submitted = await client.submit(spec)
            what = ", ".join(spec.methods) or spec.on_board_module.name  # type: ignore[union-attr]
            say(
                f"assignment {submitted.assignment} '{spec.name}': {what} of "
                f"{', '.join(spec.signals)}, {spec.iterations} iterations of the {spec.window.kind} "
                f"{spec.window.amount:g} {spec.window.unit}, on {', '.join(submitted.vehicles)}\n"
            )
            if spec.on_board_module is None:
                final = await follow_results(
                    client, submitted.assignment, follow=True, since=0, as_json=as_json, methods=spec.methods
                )
            else:
                final = await replace_midway(fleet, client, submitted.assignment, as_json, say)
            ok = ok and final == "done"
            say("")
        say(f"demo finished in {time.monotonic() - started:.1f} s")
        if web is not None:
            say("the dashboard stays up with the fleet until Ctrl-C")
            while web.poll() is None:  # noqa: ASYNC110 (a Popen's exit has nothing to await)
                await asyncio.sleep(0.5)
        return 0 if ok else 1
    finally:
        await client.close()
        if web is not None:
            stop_processes([web], 5)  # type: ignore[list-item]


async def replace_midway(fleet: LocalFleet, client: AnalystClient, assignment: int, as_json: bool, say: Any) -> str:
    """Follow the assignment and, once iteration DEPLOY_AFTER is in, deploy version 2
    of its on-board module over a second connection (as `oodida deploy` in another
    terminal would); at the end, show the versions. Returns the final state."""

    async def deploy_v2(report: IterationReport) -> None:
        if report.iteration != DEPLOY_AFTER:
            return
        v2 = ModuleSource(name="speeding_v2.py", source=(EXAMPLES / "speeding_v2.py").read_text())
        say(f"$ oodida deploy examples/speeding_v2.py --assignment {assignment} --on-board")
        deployer = await fleet.client()
        try:
            async for event in deployer.deploy(assignment=assignment, side="on_board", module=v2):
                say(render_deploy_event(event))
        finally:
            await deployer.close()
        say("")

    final = await follow_results(
        client, assignment, follow=True, since=0, as_json=as_json, methods=[], then=deploy_v2
    )
    say(f"\n$ oodida versions {assignment}")
    say(render_versions(await client.versions(assignment)))
    return final


def build_parser() -> argparse.ArgumentParser:
    parser = SuggestingParser(prog="oodida demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--vehicles", type=int, default=5)
    parser.add_argument("--speed", type=float, default=1.0, help="replay speed (1 = real time)")
    parser.add_argument("--workdir", help="where configs, logs and the database go (default: a temp dir)")
    parser.add_argument("--json", action="store_true", help="print each iteration as one JSON object")
    parser.add_argument("--dashboard", action="store_true", default=os.environ.get("DASHBOARD") == "1",
                        help="also run `oodida dashboard` on the fleet and print its address (or DASHBOARD=1)")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    setup_logging("warning")
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="oodida-demo-"))
    try:
        fleet = LocalFleet(workdir, vehicles=args.vehicles, speed=args.speed, signals=SIGNALS)
    except FleetError as exc:
        print(f"oodida demo: {exc}", file=sys.stderr)
        return 1
    try:
        return asyncio.run(run_demo(fleet, args.json, args.dashboard))
    except (FleetError, RequestFailed) as exc:
        print(f"oodida demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; stopping the fleet", file=sys.stderr)
        return 130
    finally:
        fleet.stop()
