"""The dashboard's web application (Starlette): sign-in, three pages, their event
streams, and cancel.

Every page is rendered whole on the server, then kept current by server-sent events
that carry the page's fragments as HTML (static/live.js swaps them in): no polling of
the page, no JavaScript library, nothing fetched from outside (the CSP says so too).
The dashboard never decides what a role may do: a reader's page has no cancel button,
but a cancel that arrives anyway goes to the server, which refuses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from oodida.dashboard import charts, views
from oodida.dashboard.sessions import Session, Sessions
from oodida.dashboard.source import ROLES, SessionEnded, SignInRefused, Source, SourceError

log = logging.getLogger(__name__)

COOKIE = "oodida_session"
PRE_COOKIE = "oodida_signin"  # the sign-in form's CSRF token, before there is a session
KEEPALIVE = 15.0  # s between comments on an idle event stream (proxies drop silent ones)

HEADERS = [
    (b"content-security-policy",
     b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
     b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


@dataclass(frozen=True)
class DashboardConfig:
    server_host: str
    server_port: int
    server_tls: ssl.SSLContext | None  # None: plain TCP to a loopback server
    secure_cookies: bool  # the dashboard itself is served over TLS
    idle: float = 1800.0  # s without a request (or an open page) before a session ends
    max_age: float = 12 * 3600.0  # s after sign-in before a session ends
    refresh: float = 1.0  # s between status reads while a page is open
    timeout: float = 10.0


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        await self.app(scope, receive, sending)


class Dashboard:
    def __init__(self, config: DashboardConfig) -> None:
        self.config = config
        self.sessions = Sessions(idle=config.idle, max_age=config.max_age, refresh=config.refresh)
        self.env = Environment(loader=PackageLoader("dashboard", "templates"), autoescape=select_autoescape(),
                               trim_blocks=True, lstrip_blocks=True)
        self.env.globals.update(clock=views.clock, ago=views.ago)
        self._reaper: asyncio.Task[None] | None = None
        self.stopping = False

    def stop_streams(self) -> None:
        """The process is stopping: end every open event stream now, so that the web
        server's graceful shutdown does not wait for browsers that never hang up."""
        self.stopping = True
        for session in self.sessions.all():
            session.live.stop()

    # --- plumbing -----------------------------------------------------------------------------

    def render(self, name: str, **context: Any) -> str:
        return self.env.get_template(name).render(**context)

    def page(self, name: str, context: Mapping[str, Any], *, status: int = 200) -> HTMLResponse:
        """A whole page: its context is one mapping (a page's own values and its fragments,
        whose names are data), so none of it can be taken for the response's status."""
        return HTMLResponse(self.render(name, **context), status_code=status)

    def _cookie(self, response: Response, name: str, value: str, max_age: int | None = None) -> None:
        response.set_cookie(name, value, max_age=max_age, httponly=True, samesite="strict",
                            secure=self.config.secure_cookies, path="/")

    def session(self, request: Request, *, touch: bool = True) -> Session | None:
        return self.sessions.get(request.cookies.get(COOKIE), touch=touch)

    def to_signin(self) -> RedirectResponse:
        return RedirectResponse("/signin", status_code=303)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self._reaper = asyncio.create_task(self.sessions.reap())
        try:
            yield
        finally:
            self._reaper.cancel()
            await self.sessions.close()

    # --- sign-in ------------------------------------------------------------------------------

    async def signin_page(self, request: Request) -> Response:
        sid = request.cookies.get(COOKIE)
        if self.sessions.get(sid) is not None:
            return RedirectResponse("/fleet", status_code=303)
        reason = self.sessions.ended_reason(sid)
        return self._signin_form(reason=reason, status=200, clear=sid is not None)

    def _signin_form(self, *, reason: str | None, status: int, identity: str = "", role: str = "analyst",
                     clear: bool = False) -> Response:
        token = secrets.token_urlsafe(32)
        context = {"reason": reason, "csrf": token, "identity": identity, "role": role, "roles": ROLES,
                   "server": f"{self.config.server_host}:{self.config.server_port}"}
        response = self.page("signin.html", context, status=status)
        self._cookie(response, PRE_COOKIE, token, max_age=3600)
        if clear:
            response.delete_cookie(COOKIE, path="/")
        return response

    async def signin(self, request: Request) -> Response:
        form = await request.form()
        identity = str(form.get("identity", "")).strip()
        role = str(form.get("role", "analyst"))
        secret = str(form.get("secret", ""))
        expected = request.cookies.get(PRE_COOKIE, "")
        if not expected or not secrets.compare_digest(expected, str(form.get("csrf", ""))):
            return self._signin_form(reason="the form expired or came from elsewhere; please sign in again", status=403)
        if not identity or not secret:
            return self._signin_form(
                reason="give your identity and your secret", status=400, identity=identity, role=role
            )
        try:
            source = await Source.open(
                self.config.server_host, self.config.server_port, identity=identity, role=role, secret=secret,
                ssl_context=self.config.server_tls, timeout=self.config.timeout,
            )
        except SignInRefused as exc:
            return self._signin_form(reason=f"sign-in refused: {exc}", status=401, identity=identity, role=role)
        finally:
            del secret, form  # the secret served the handshake; it is kept nowhere
        session = self.sessions.create(source)
        self.sessions.forget(request.cookies.get(COOKIE))
        response = RedirectResponse("/fleet", status_code=303)
        self._cookie(response, COOKIE, session.sid)
        response.delete_cookie(PRE_COOKIE, path="/")
        return response

    async def signout(self, request: Request) -> Response:
        session = self.session(request)
        if session is not None and await self._csrf_ok(request, session):
            await self.sessions.end(session.sid, "you signed out")
        return self.to_signin()

    async def _csrf_ok(self, request: Request, session: Session) -> bool:
        form = await request.form()
        return secrets.compare_digest(session.csrf, str(form.get("csrf", "")))

    # --- pages ----------------------------------------------------------------------------------

    async def _ready(self, session: Session) -> None:
        if session.live.status is None:
            with contextlib.suppress(SourceError):
                await session.live.refresh_status()

    async def fleet(self, request: Request) -> Response:
        session = self.session(request)
        if session is None:
            return self.to_signin()
        await self._ready(session)
        return self.page("fleet.html", {"s": session, "page": "fleet", "events": "/events/fleet",
                                        **self.fleet_fragments(session)})

    async def assignments(self, request: Request) -> Response:
        session = self.session(request)
        if session is None:
            return self.to_signin()
        await self._ready(session)
        return self.page("assignments.html", {"s": session, "page": "assignments", "events": "/events/assignments",
                                              **self.assignments_fragments(session)})

    async def assignment(self, request: Request) -> Response:
        session = self.session(request)
        if session is None:
            return self.to_signin()
        number = int(request.path_params["number"])
        await self._ready(session)
        f = session.live.follow(number)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(f.loaded.wait(), self.config.timeout)
        flash, session.flash = session.flash, []
        return self.page("assignment.html", {"s": session, "page": "assignment", "number": number, "flash": flash,
                                             "events": f"/events/assignments/{number}",
                                             **self.assignment_fragments(session, number)})

    def fleet_fragments(self, session: Session) -> dict[str, str]:
        live = session.live
        now = time.time()
        rows = live.rows
        points = [(r.vehicle, r.position["latitude"], r.position["longitude"], r.online) for r in rows if r.position]
        context = {"rows": rows, "now": now, "status": live.status, "error": live.status_error,
                   "online": sum(r.online for r in rows), "troubled": sum(bool(r.problems) for r in rows),
                   "positions": charts.positions_chart(points) if points else None}
        return {"fleet_summary": self.render("_fleet_summary.html", **context),
                "fleet_table": self.render("_fleet_table.html", **context)}

    def assignments_fragments(self, session: Session) -> dict[str, str]:
        live = session.live
        items = []
        for a in sorted((live.status or {}).get("assignments", []), key=lambda a: -a["assignment"]):
            versions = live.versions.get(a["assignment"], [])
            items.append({**a, "submitter": views.submitter(versions), "in_force": views.versions_in_force(versions)})
        return {"assignments_table": self.render("_assignments_table.html", items=items, s=session,
                                                 error=live.status_error, now=time.time())}

    def assignment_fragments(self, session: Session, number: int, only_summary: bool = False) -> dict[str, str]:
        """The page's fragments; on a status change only the summary (names, state,
        progress), not the charts and tables that only new iterations change."""
        live = session.live
        f = live.followed.get(number)
        info = next((a for a in (live.status or {}).get("assignments", []) if a["assignment"] == number), None)
        reports = sorted(f.reports, key=lambda r: r["iteration"]) if f else []
        versions = f.versions if f else []
        latest = reports[-1] if reports else None
        if only_summary:
            return {"summary": self.render("_a_summary.html", number=number, info=info, f=f, reports=reports, s=session,
                                           submitter=views.submitter(versions), error=f.error if f else None)}
        context = {
            "number": number, "info": info, "f": f, "reports": reports, "latest": latest, "s": session,
            "charts": views.assignment_charts(reports, versions),
            "vehicles": views.vehicle_rows(latest), "versions": views.takeovers(versions, reports),
            "submitter": views.submitter(versions), "error": f.error if f else None,
        }
        names = ("summary", "charts", "iterations", "vehicles", "versions")
        return {name: self.render(f"_a_{name}.html", **context) for name in names}

    # --- event streams -----------------------------------------------------------------------------

    async def events(self, request: Request) -> Response:
        session = self.session(request, touch=False)
        what: str | int = request.path_params.get("what", "fleet")
        if "number" in request.path_params:
            what = int(request.path_params["number"])
        elif what not in ("fleet", "assignments"):
            return Response("no such event stream", status_code=404)
        render = (
            (lambda s, reasons: self.assignment_fragments(s, what, only_summary="data" not in reasons))
            if isinstance(what, int)
            else (lambda s, reasons: self.fleet_fragments(s)) if what == "fleet"
            else (lambda s, reasons: self.assignments_fragments(s))
        )
        return StreamingResponse(self._stream(session, what, render), media_type="text/event-stream",
                                 headers={"cache-control": "no-store", "x-accel-buffering": "no"})

    async def _stream(self, session: Session | None, what: str | int, render: Any) -> AsyncIterator[str]:
        if session is None:
            yield "event: ended\ndata: /signin\n\n"
            return
        async with session.live.watch(what) as watcher:
            last: dict[str, str] = {}
            while True:
                reasons = await watcher.next(KEEPALIVE)
                if not reasons:
                    yield ": keepalive\n\n"
                    continue
                if "ended" in reasons:
                    yield "event: ended\ndata: /signin\n\n"
                    return
                if "stop" in reasons or self.stopping:
                    return
                fragments = render(session, reasons)
                changed = {k: v for k, v in fragments.items() if last.get(k) != v}
                last.update(fragments)
                if changed:
                    yield f"event: fragments\ndata: {json.dumps(changed)}\n\n"

    # --- actions -----------------------------------------------------------------------------------

    async def cancel(self, request: Request) -> Response:
        session = self.session(request)
        if session is None:
            return self.to_signin()
        number = int(request.path_params["number"])
        if not await self._csrf_ok(request, session):
            return HTMLResponse("refused: the form's CSRF token is missing or wrong", status_code=403)
        try:
            state = await session.source.cancel(number)
            session.flash.append(f"assignment {number} is {state}")
        except SessionEnded:
            return self.to_signin()
        except SourceError as exc:
            session.flash.append(f"the server refused to cancel assignment {number}: {exc}")
        return RedirectResponse(f"/assignments/{number}", status_code=303)

    async def home(self, request: Request) -> Response:
        return RedirectResponse("/fleet" if self.session(request) else "/signin", status_code=303)


def create_app(config: DashboardConfig) -> Starlette:
    d = Dashboard(config)
    app = Starlette(
        routes=[
            Route("/", d.home),
            Route("/signin", d.signin_page, methods=["GET"]),
            Route("/signin", d.signin, methods=["POST"]),
            Route("/signout", d.signout, methods=["POST"]),
            Route("/fleet", d.fleet),
            Route("/assignments", d.assignments),
            Route("/assignments/{number:int}", d.assignment),
            Route("/assignments/{number:int}/cancel", d.cancel, methods=["POST"]),
            Route("/events/assignments/{number:int}", d.events),
            Route("/events/{what:str}", d.events),
            Mount("/static", StaticFiles(packages=[("dashboard", "static")]), name="static"),
        ],
        lifespan=d.lifespan,
    )
    app.state.dashboard = d
    app.add_middleware(SecurityHeaders)
    return app
