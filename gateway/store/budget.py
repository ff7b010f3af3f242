"""A time budget for one store call, and how the database is made to stop at its end.

``Budget`` is shared by the caller (the HTTP request that owns it: its timer, the client
going away, a graceful stop) and the worker thread running the queries. ``bounded`` ties
it to one pooled connection:

* SQLite: a progress handler, called every ``SQLITE_STEPS`` virtual-machine steps, stops
  the running statement once the budget is spent or cancelled (``interrupted``).
* PostgreSQL: before each statement, ``SET LOCAL statement_timeout`` to what is left of
  the budget, so the server stops the query even if the gateway cannot ask; a cancel
  (``cancel_safe``) for the client going away and for shutdown.

Either way a statement that would start after the end raises at once, and the error that
leaves is ``Cancelled`` (never a "transient database error").
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, event
from sqlalchemy.exc import SQLAlchemyError

from gateway.errors import Cancelled, GatewayError

SQLITE_STEPS = 20_000  # ~1 ms of SQLite work between two looks at the clock
REASONS = {
    "budget": "the query did not finish within the request time budget of {s:g} s and "
              "was cancelled in the database",
    "disconnect": "the client went away; the query was cancelled in the database",
    "shutdown": "the gateway is stopping; the query was cancelled in the database",
}


class Budget:
    """Seconds for one call, and a cancellation that any thread may trigger."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self.deadline = clock() + seconds
        self.reason: str | None = None
        self._hooks: list[Callable[[], Any]] = []
        self._lock = threading.Lock()

    @property
    def stopped(self) -> bool:
        if self.reason is None and self._clock() >= self.deadline:
            self.reason = "budget"
        return self.reason is not None

    def remaining(self) -> float:
        return max(0.0, self.deadline - self._clock())

    def cancel(self, reason: str) -> None:
        """Stop the work now (``disconnect``, ``shutdown`` or ``budget``); blocks for as
        long as the database's cancel takes (PostgreSQL: one round trip)."""
        with self._lock:  # held: a connection is not released while it is being cancelled
            if self.reason is None:
                self.reason = reason
            for hook in self._hooks:
                with contextlib.suppress(Exception):  # the statement may just have ended
                    hook()

    def error(self) -> Cancelled:
        reason = self.reason or "budget"
        return Cancelled(REASONS[reason].format(s=self.seconds), reason=reason,
                         seconds=self.seconds)

    def check(self) -> None:
        if self.stopped:
            raise self.error()

    @contextmanager
    def interrupting(self, hook: Callable[[], Any]) -> Iterator[None]:
        with self._lock:
            self._hooks.append(hook)
        try:
            yield
        finally:
            with self._lock:
                self._hooks.remove(hook)


@contextmanager
def bounded(conn: Connection, dialect: str, budget: Budget) -> Iterator[None]:
    """Run the block's statements on ``conn`` within ``budget`` (see the module doc)."""
    budget.check()
    raw: Any = conn.connection.dbapi_connection

    def before(*_args: Any) -> None:
        budget.check()
        if dialect != "sqlite":  # the same transaction as the statement that follows
            # rounded up: the server must not stop the query before the budget is spent
            milliseconds = max(1, math.ceil(budget.remaining() * 1000))
            raw.execute(f"SET LOCAL statement_timeout = {milliseconds}")

    hook: Callable[[], Any] = _nothing  # SQLite: the progress handler sees ``reason``
    if dialect == "sqlite":
        raw.set_progress_handler(lambda: 1 if budget.stopped else 0, SQLITE_STEPS)
    else:
        hook = getattr(raw, "cancel_safe", raw.cancel)
    event.listen(conn, "before_cursor_execute", before)
    try:
        with budget.interrupting(hook):
            yield
    except (GatewayError, SQLAlchemyError) as exc:
        if budget.stopped:
            raise budget.error() from exc
        if _cancelled_by_server(exc):  # statement_timeout ran out on the server's clock
            budget.reason = budget.reason or "budget"
            raise budget.error() from exc
        raise
    finally:
        event.remove(conn, "before_cursor_execute", before)
        if dialect == "sqlite":
            raw.set_progress_handler(None, 0)


def _cancelled_by_server(exc: BaseException) -> bool:
    """Whether PostgreSQL cancelled the statement (SQLSTATE 57014, query_canceled): only
    the budget's timeout or cancel does that on a bounded connection."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if getattr(seen, "sqlstate", None) == "57014" or getattr(
                getattr(seen, "orig", None), "sqlstate", None) == "57014":
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _nothing() -> None:
    return None
