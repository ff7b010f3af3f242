"""Console sessions: who is logged in, kept on the server, named by an opaque cookie.

A session is a random 256-bit id (``secrets.token_urlsafe``) → the user's ``Principal``,
its CSRF token, and its expiry (8 hours after login, or 30 minutes without a request).
The cookie ``gateway_console`` is HttpOnly, SameSite=Lax (the OpenID Connect issuer's
redirect back must carry it), and Secure unless the gateway listens on loopback only.
Logging in replaces the session id (no fixation); logging out forgets it. Sessions live in
the process: a restart logs everybody out.

CSRF: every form carries the session's token in a hidden ``csrf`` field; a POST without
it, or with another one, is refused 403 before anything runs. Forms before login (the
login form itself) have a session too, without a user.

Anonymous mode (no clients file, loopback): every session runs as ``ANONYMOUS`` and the
pages say so.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from gateway.security.principal import ANONYMOUS, Principal

COOKIE = "gateway_console"
LIFETIME = 8 * 3600.0
IDLE = 30 * 60.0
MAX_SESSIONS = 10_000


@dataclass
class Session:
    id: str
    csrf: str
    principal: Principal | None = None  # None: not logged in (yet)
    created: float = field(default_factory=time.monotonic)
    seen: float = field(default_factory=time.monotonic)
    pending: dict[str, Any] = field(default_factory=dict)  # OIDC state, nonce, verifier

    @property
    def user(self) -> str | None:
        return self.principal.client_id if self.principal is not None else None

    def csrf_ok(self, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf, str(token))


class Sessions:
    def __init__(self, *, anonymous: bool, lifetime: float = LIFETIME,
                 idle: float = IDLE) -> None:
        self.anonymous = anonymous
        self.lifetime, self.idle = lifetime, idle
        self._by_id: dict[str, Session] = {}
        self._lock = threading.Lock()

    def new(self) -> Session:
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32),
                          ANONYMOUS if self.anonymous else None)
        with self._lock:
            self._sweep()
            self._by_id[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        now = time.monotonic()
        with self._lock:
            session = self._by_id.get(session_id)
            if session is None:
                return None
            if now - session.created > self.lifetime or now - session.seen > self.idle:
                del self._by_id[session_id]
                return None
            session.seen = now
            return session

    def login(self, old: Session | None, principal: Principal) -> Session:
        """A fresh session id for the logged-in user (the pre-login id is dropped)."""
        self.drop(old)
        session = self.new()
        session.principal = principal
        return session

    def drop(self, session: Session | None) -> None:
        if session is not None:
            with self._lock:
                self._by_id.pop(session.id, None)

    def _sweep(self) -> None:
        if len(self._by_id) < MAX_SESSIONS:
            return
        now = time.monotonic()
        for sid, s in list(self._by_id.items()):
            if now - s.created > self.lifetime or now - s.seen > self.idle:
                del self._by_id[sid]
        while len(self._by_id) >= MAX_SESSIONS:  # the oldest go first
            del self._by_id[next(iter(self._by_id))]
