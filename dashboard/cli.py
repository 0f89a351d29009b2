"""`oodida dashboard`: the web dashboard, a process of its own beside the server.

It listens for browsers and dials the server like any analyst's client; the server
gets no socket and no code for it. Without a certificate it listens on loopback
only (the platform's rule for plain TCP, link/tls.py); with --cert and --key it
serves HTTPS and its cookies are marked Secure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import ssl
import sys

from oodida.dashboard.source import client_tls, plain_problem


class UsageError(ValueError):
    pass


def host_port(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"{what} {text!r}: write HOST:PORT, e.g. 127.0.0.1:8470")
    return host.strip("[]"), int(port)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="oodida dashboard", description=__doc__.split("\n\n")[0])
    p.add_argument("--listen", default="127.0.0.1:8470",
                   help="HOST:PORT for browsers (default 127.0.0.1:8470; port 0: any free)")
    p.add_argument("--server", default=os.environ.get("OODIDA_SERVER"),
                   help="the oodida server's HOST:PORT (or OODIDA_SERVER)")
    p.add_argument("--ca", help="the CA the server's certificate must chain to (oodida init's ca.pem); "
                   "default: the system's CAs")
    p.add_argument("--plain", action="store_true", help="plain TCP to the server (a loopback server without TLS only)")
    p.add_argument("--cert", help="the dashboard's own certificate (PEM), to serve HTTPS")
    p.add_argument("--key", help="the key of --cert")
    p.add_argument("--session-idle", type=float, default=1800.0,
                   help="seconds without use before a session ends (default 1800)")
    p.add_argument("--session-max-age", type=float, default=12 * 3600.0,
                   help="seconds after sign-in before a session ends (default 43200)")
    p.add_argument("--refresh", type=float, default=1.0,
                   help="seconds between status reads while a page is open (default 1)")
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        if not args.server:
            raise UsageError("say which server: --server HOST:PORT (or OODIDA_SERVER)")
        server = host_port(args.server, "--server")
        listen = host_port(args.listen, "--listen")
        if (args.cert is None) != (args.key is None):
            raise UsageError("--cert and --key go together")
        if args.cert is None and (problem := plain_problem(listen[0])) is not None:
            raise UsageError(f"--listen without --cert/--key: {problem}")
        if args.plain and args.ca:
            raise UsageError("--plain and --ca: choose one")
        if args.plain and (problem := plain_problem(server[0])) is not None:
            raise UsageError(f"--plain: {problem}")
        for name in ("session_idle", "session_max_age", "refresh"):
            if getattr(args, name) <= 0:
                raise UsageError(f"--{name.replace('_', '-')} must be above 0")
        try:
            server_tls = None if args.plain else (client_tls(args.ca) if args.ca else ssl.create_default_context())
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"--ca {args.ca}: cannot load it: {exc}") from None
        if args.cert:
            try:
                ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(args.cert, args.key)
            except (OSError, ssl.SSLError) as exc:
                raise UsageError(f"--cert/--key: cannot load them: {exc}") from None
    except UsageError as exc:
        print(f"oodida dashboard: {exc}", file=sys.stderr)
        return 2
    try:
        import uvicorn

        from oodida.dashboard.app import DashboardConfig, create_app
    except ImportError as exc:
        print(f"oodida dashboard: {exc.name} is missing; pip install 'oodida[dashboard]'", file=sys.stderr)
        return 2
    from oodida.core.logs import setup_logging

    setup_logging(args.log_level)
    config = DashboardConfig(
        server_host=server[0], server_port=server[1], server_tls=server_tls, secure_cookies=args.cert is not None,
        idle=args.session_idle, max_age=args.session_max_age, refresh=args.refresh,
    )
    family = socket.AF_INET6 if ":" in listen[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(listen)
    except OSError as exc:
        print(f"oodida dashboard: cannot listen on {args.listen}: {exc.strerror}", file=sys.stderr)
        return 1
    sock.listen(128)
    port = sock.getsockname()[1]
    scheme = "https" if args.cert else "http"
    shown = f"[{listen[0]}]" if ":" in listen[0] else listen[0]
    print(f"oodida dashboard: {scheme}://{shown}:{port}/ (server {server[0]}:{server[1]})", flush=True)
    app = create_app(config)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: object) -> None:
            asyncio.get_event_loop().call_soon_threadsafe(app.state.dashboard.stop_streams)
            super().handle_exit(sig, frame)  # type: ignore[arg-type]

    uv = Server(uvicorn.Config(
        app, log_level=args.log_level, access_log=False, lifespan="on",
        ssl_certfile=args.cert, ssl_keyfile=args.key, timeout_graceful_shutdown=2,
    ))
    try:
        uv.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    return 0
