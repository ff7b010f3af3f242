"""The console's glue: its settings and parts (``Console``), the session of a request, the
access check of a page, and rendering a template into an HTML answer.

Access is the API's: a page needs a scope of the logged-in user (``ADMIN`` for the
operations pages, ``RAW`` for a raw message, read and search on ResearchStudy and
ResearchSubject for the studies) and reads with the user's study/site restriction. Not
logged in: a redirect to the login page. Logged in without the scope: 403 naming it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from gateway import __version__
from gateway.adapters.loader import Network
from gateway.console.session import COOKIE, LIFETIME, Session, Sessions
from gateway.security.install import Auth
from gateway.security.principal import Principal
from gateway.store import SqlStore

Need = Callable[[Principal], str | None]  # why the principal may not: None when it may
NAV = (("network", "/console", "Network"), ("messages", "/console/messages", "Messages"),
       ("unmapped", "/console/unmapped", "Unmapped codes"),
       ("studies", "/console/studies", "Studies"), ("exports", "/console/exports", "Lab exports"),
       ("bus", "/console/bus", "Bus"))


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("gateway.console", "templates"),
                      autoescape=select_autoescape(default=True), auto_reload=False)
    env.filters["when"] = _when
    return env


def _when(value: Any) -> str:
    """An instant for people: ISO text or epoch seconds → ``YYYY-MM-DD HH:MM:SS`` (UTC)."""
    if value is None or value == "":
        return "never"
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC).isoformat(sep=" ", timespec="seconds")[:19]
    return str(value)[:19].replace("T", " ")


@dataclass
class Console:
    store: SqlStore
    network: Network
    auth: Auth
    secure_cookies: bool
    service: Any = None  # IngestService on an edge / all: replay
    bus: Any = None  # BusComponents: the Bus page
    public_url: Callable[[], str] | None = None  # the OIDC redirect_uri's root
    sessions: Sessions = field(init=False)
    env: Environment = field(default_factory=_environment)
    now: Callable[[], datetime] = lambda: datetime.now(UTC)

    def __post_init__(self) -> None:
        self.sessions = Sessions(anonymous=self.auth.tokens is None)
        self._cache: dict[Any, tuple[float, Any]] = {}
        self._cache_lock = threading.Lock()
        for name in self.env.list_templates():  # compiled now, not on a person's first visit
            self.env.get_template(name)

    def cached(self, key: Any, seconds: float, compute: Callable[[], Any]) -> Any:
        """``compute()``, or its result of less than ``seconds`` ago for the same ``key``
        (pages whose figures move slowly, and cost most: the studies)."""
        now = time.monotonic()
        with self._cache_lock:
            hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        value = compute()
        with self._cache_lock:
            if len(self._cache) > 1000:
                self._cache.clear()
            self._cache[key] = (now + seconds, value)
        return value

    @property
    def anonymous(self) -> bool:
        return self.auth.tokens is None

    # -- sessions ----------------------------------------------------------------------
    def session(self, request: Request) -> tuple[Session, bool]:
        """The request's session, or a new one (True: its cookie must be set)."""
        found = self.sessions.get(request.cookies.get(COOKIE))
        session, fresh = (found, False) if found is not None else (self.sessions.new(), True)
        if session.principal is not None:  # the audit trail's agent
            request.state.principal = session.principal
        else:
            request.state.audit = {"agent": "unauthenticated"}
        return session, fresh

    def set_cookie(self, response: Response, session: Session) -> None:
        response.set_cookie(COOKIE, session.id, max_age=int(LIFETIME), path="/console",
                            httponly=True, samesite="lax", secure=self.secure_cookies)

    def guard(self, request: Request, need: Need | None
              ) -> tuple[Session, bool, Principal] | Response:
        """The logged-in session allowed to see this page (with its cookie to set or not,
        and its user), or the answer that refuses."""
        session, fresh = self.session(request)
        if session.principal is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            response = RedirectResponse(f"/console/login?next={quote(target, safe='')}", 303)
            if fresh:
                self.set_cookie(response, session)
            return response
        reason = need(session.principal) if need is not None else None
        if reason is not None:
            return self.render(request, session, fresh, "refused.html", status=403,
                               reason=reason)
        return session, fresh, session.principal

    # -- rendering ---------------------------------------------------------------------
    def render(self, request: Request, session: Session, fresh: bool, template: str, *,
               status: int = 200, **context: Any) -> HTMLResponse:
        alerts = current_alerts(request)
        html = self.env.get_template(template).render(
            nav=NAV, user=session.user, anonymous=self.anonymous, mode=self.auth.mode,
            csrf=session.csrf,
            alerts=alerts, version=__version__, now=self.now().isoformat(timespec="seconds"),
            oidc=self.oidc_enabled, **context)
        response = HTMLResponse(html, status_code=status)
        if fresh:
            self.set_cookie(response, session)
        return response

    @property
    def oidc_enabled(self) -> bool:
        return self.auth.oidc is not None and bool(self.auth.settings.oidc_console_client_id)


def current_alerts(request: Request) -> list[Any]:
    """The current alerts of ``app.state.alerts`` (gateway.observability), when installed."""
    source = getattr(request.app.state, "alerts", None)
    if source is None:
        return []
    try:
        return list(source.current())
    except Exception:  # noqa: BLE001 - a broken alert source must not take the console down
        return []

