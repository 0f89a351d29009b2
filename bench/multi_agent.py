"""Several on-board agents in one process: one asyncio loop, one connection each.

For benchmarks of large simulated fleets on a small machine, where a process per
agent would spend the cores on interpreters rather than on the protocol. Each agent
is the real agent (`agent.main.run_agent`): its own sources, store, task runner and
TCP connection to the server; only the process and the event loop are shared.

    .venv/bin/python bench/multi_agent.py [--log-level LEVEL] AGENT.toml [AGENT.toml ...]

Stops every agent on SIGTERM or SIGINT (exit 0). If one agent fails to start or
dies, the others are stopped too and the exit status is 1.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from agent.config import AgentConfig, load_agent_config
from agent.main import run_agent
from oodida.errors import OodidaError
from oodida.logs import setup_logging

log = logging.getLogger("multi_agent")


async def run_all(configs: list[AgentConfig]) -> int:
    # One stop event for all: run_agent installs its own SIGTERM/SIGINT handler on
    # the loop (each call replaces the previous one), and every one sets this event.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    jobs = {asyncio.create_task(run_agent(c, stop), name=f"agent-{c.vehicle}"): c.vehicle for c in configs}
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
    for job, result in zip(jobs, results):
        if isinstance(result, BaseException) and job not in done:
            status = 1
            log.error("agent %s failed while stopping: %s", jobs[job], result)
    stopper.cancel()
    return status


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("configs", nargs="+", help="agent TOML files, one per agent")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="overrides the configs")
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
    setup_logging(args.log_level or configs[0].log_level)
    log.info("running %d agents in one process: %s", len(configs), ", ".join(vehicles))
    try:
        return asyncio.run(run_all(configs))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
