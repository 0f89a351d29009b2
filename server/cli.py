"""`oodida server`: run the off-board server (oodida.server.app) as a service.

Its configuration, logging, GC tuning, systemd notifications and exit statuses (2:
the configuration's to mend, no restart; 1: failed, the unit may retry). The
commands that dial a server (`submit`, `status`, ...) are the shell's
(oodida.commands): the server package does not import the client.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from oodida.core.errors import OodidaError
from oodida.core.logs import setup_logging

log = logging.getLogger(__name__)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("server", help="run the off-board server")
    p.add_argument("--config", required=True)
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")
    p.add_argument("--log-format", choices=["text", "journal"], default="text")


def run(args: argparse.Namespace) -> int:
    """Serve until a signal; the exit status says whose the fault is when it cannot."""
    from oodida.server.app import serve
    from oodida.server.config import ConfigError, load_server_config

    try:
        config = load_server_config(args.config)
    except ConfigError as exc:  # 2, as for the agent: the unit does not restart on it
        print(f"oodida server: {exc}", file=sys.stderr)
        return 2
    setup_logging(args.log_level, fmt=args.log_format)
    from oodida.core.limits import tune_gc_for_service

    tune_gc_for_service()  # a process-wide choice: the server's command, not its class
    from oodida.server.app import ServerFailed
    from oodida.server.dbcheck import DatabaseUnusable
    from oodida.server.listen import ListenError

    try:
        asyncio.run(_serve_until_signal(config, serve))
    except (DatabaseUnusable, ListenError) as exc:  # the configuration's to mend: 2, no restart
        log.debug("the server did not start", exc_info=True)
        log.error("%s", exc)
        return 2
    except ServerFailed:  # already logged, once, with the reason
        log.debug("the server stopped", exc_info=True)
        return 1
    except KeyboardInterrupt:
        pass
    except OodidaError as exc:  # found while starting, e.g. the [metrics] port is taken: 1, the unit may retry
        print(f"oodida server: {exc}", file=sys.stderr)
        return 1
    return 0


async def _serve_until_signal(config: Any, serve: Any) -> None:
    """Serve until SIGTERM/SIGINT. Under systemd (`Type=notify`): READY=1 once the
    server listens, WATCHDOG=1 from this event loop (a wedged loop stops the pings
    and systemd restarts the server), STOPPING=1 when the signal arrives."""
    import signal

    from oodida.core.service import Notifier

    notifier = Notifier()
    ready = asyncio.Event()
    task = asyncio.create_task(serve(config, ready))
    loop = asyncio.get_running_loop()

    def stop() -> None:
        notifier.stopping("stopping")
        task.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    watchdog: asyncio.Task[None] | None = None
    try:
        started = asyncio.create_task(ready.wait())
        await asyncio.wait([task, started], return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        if ready.is_set():
            notifier.ready(f"listening on {config.listen.host}:{config.listen.port}")
            watchdog = asyncio.create_task(notifier.watchdog(), name="watchdog")
        await task
    except asyncio.CancelledError:
        pass
    finally:
        if watchdog is not None:
            watchdog.cancel()
