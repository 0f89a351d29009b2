"""`oodida agent --config agent.toml`: run the on-board agent."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from oodida.agent.config import ConfigError, load_agent_config
from oodida.agent.main import run_agent
from oodida.core.errors import OodidaError
from oodida.core.logs import setup_logging
from oodida.core.suggest import SuggestingParser

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = SuggestingParser(prog="oodida agent", description="Run the on-board agent of one vehicle.")
    parser.add_argument("--config", required=True, help="the agent's TOML configuration file")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="overrides the config")
    parser.add_argument("--log-format", choices=["text", "journal"], default="text")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_agent_config(args.config)
    except OodidaError as exc:
        print(f"oodida agent: {exc}", file=sys.stderr)
        return 2
    setup_logging(args.log_level or config.log_level, fmt=args.log_format)
    try:
        asyncio.run(run_agent(config))
    except ConfigError as exc:  # found while starting (a source's files, the outbox's folder read-only)
        log.debug("the agent did not start", exc_info=True)  # the whole story, for --log-level debug
        log.error("%s", exc)
        return 2
    except OodidaError as exc:  # a run-time failure (a CAN device absent): 1, systemd restarts it
        log.debug("the agent stopped", exc_info=True)
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
