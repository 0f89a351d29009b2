"""Several on-board agents in one process: one asyncio loop, one connection each.

For benchmarks of large simulated fleets on a small machine, where a process per
agent would spend the cores on interpreters rather than on the protocol. Each agent
is the real agent (`agent.main.run_agent`): its own sources, store, task runner and
TCP connection to the server; only the process and the event loop are shared.

    .venv/bin/python bench/multi_agent.py [--log-level LEVEL] [--share-sandbox] AGENT.toml [AGENT.toml ...]

By default every agent has its own sandbox (a zygote, and a worker per assignment),
as on a vehicle (started when a module first needs it). With `--share-sandbox` all
agents of the process share one `agent.modules.ModuleRunner`, so one zygote per
process and one worker per assignment for all its agents: what lets a thousand
simulated vehicles with analysts' modules fit a small machine. Each agent still
checks and loads every version it is sent and answers for itself, but a version
is compiled once per worker (the others find it loaded), and the calls of all
agents for one assignment are serialised in that assignment's worker. The configs'
[sandbox] tables must then agree.

Stops every agent on SIGTERM or SIGINT (exit 0). If one agent fails to start or
dies, the others are stopped too and the exit status is 1.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from oodida.agent.config import AgentConfig, load_agent_config
from oodida.agent.main import run_agent
from oodida.agent.modules import ModuleRunner
from oodida.core.errors import OodidaError
from oodida.core.logs import setup_logging
from oodida.sandbox.supervisor import SandboxLimits

log = logging.getLogger("multi_agent")


def shared_runner(configs: list[AgentConfig]) -> ModuleRunner:
    """One sandbox runner for all agents, with the limits their configs agree on
    (as `agent.main.build_agent` builds each agent's own)."""
    sandbox = configs[0].sandbox
    return ModuleRunner(SandboxLimits(call_timeout=sandbox.call_timeout, memory_mb=sandbox.memory_mb, uid=sandbox.uid,
                                      max_workers=sandbox.max_workers))


async def run_all(configs: list[AgentConfig], share_sandbox: bool = False) -> int:
    # One stop event for all: run_agent installs its own SIGTERM/SIGINT handler on
    # the loop (each call replaces the previous one), and every one sets this event.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Each agent closes its runner when it stops; a shared one is closed again below,
    # in case a late load started a worker after the first agent closed it.
    modules = shared_runner(configs) if share_sandbox else None
    try:
        return await _run_jobs(configs, stop, modules)
    finally:
        if modules is not None:
            await modules.close()


async def _run_jobs(configs: list[AgentConfig], stop: asyncio.Event, modules: ModuleRunner | None) -> int:
    jobs = {
        asyncio.create_task(run_agent(c, stop, modules), name=f"agent-{c.vehicle}"): c.vehicle for c in configs
    }
    stopper = asyncio.create_task(stop.wait())
    status = 0
    done, _ = await asyncio.wait([*jobs, stopper], return_when=asyncio.FIRST_COMPLETED)
    for job in done:
        if job is stopper:
            continue
        status = 1
        exc = job.exception()
        if exc is None:
            log.error("agent %s ended on its own", jobs[job])
        else:
            log.error("agent %s failed: %s", jobs[job], exc, exc_info=not isinstance(exc, OodidaError))
    stop.set()
    results = await asyncio.gather(*jobs, return_exceptions=True)
    for job, result in zip(jobs, results, strict=True):
        if isinstance(result, BaseException) and job not in done:
            status = 1
            log.error("agent %s failed while stopping: %s", jobs[job], result)
    stopper.cancel()
    return status


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("configs", nargs="+", help="agent TOML files, one per agent")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="overrides the configs")
    parser.add_argument(
        "--share-sandbox", action="store_true", help="one sandbox worker for all agents of this process"
    )
    args = parser.parse_args(argv)
    try:
        configs = [load_agent_config(path) for path in args.configs]
    except OodidaError as exc:
        print(f"multi_agent: {exc}", file=sys.stderr)
        return 2
    vehicles = [c.vehicle for c in configs]
    if len(set(vehicles)) != len(vehicles):
        print(f"multi_agent: a vehicle id appears twice in {vehicles}", file=sys.stderr)
        return 2
    if args.share_sandbox and len({c.sandbox for c in configs}) > 1:
        print("multi_agent: --share-sandbox needs the same [sandbox] table in every config", file=sys.stderr)
        return 2
    setup_logging(args.log_level or configs[0].log_level)
    log.info(
        "running %d agents in one process (%s): %s",
        len(configs),
        "one shared sandbox worker" if args.share_sandbox else "a sandbox worker each",
        ", ".join(vehicles),
    )
    try:
        return asyncio.run(run_all(configs, args.share_sandbox))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
