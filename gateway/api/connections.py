"""HTTP connections with bounds that uvicorn does not enforce itself.

uvicorn (h11) holds a connection that never sends a byte, one that sends its headers a
byte at a time, and one that stops in the middle of a body, for ever: its only timer is
the keep-alive one, armed after a response. ``guarded_protocol`` returns uvicorn's h11
protocol with three bounds (``uvicorn.Config(http=...)``):

* ``max_connections``: one more is answered ``503`` and closed at once;
* ``header_timeout``: a request's line and headers must arrive complete within this many
  seconds of its first byte (or, on a new connection, of the connection): else ``408``
  and the connection is closed (slowloris);
* ``body_timeout``: while a request body is being received, a pause longer than this
  closes the connection (the application sees ``http.disconnect``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)
BUSY = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n"
        b"connection: close\r\ncontent-length: 32\r\n\r\ntoo many connections, try again\n")
TIMEOUT = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\n"
           b"connection: close\r\ncontent-length: 36\r\n\r\nrequest headers not complete in time\n")


class Report:
    """One warning per kind and ``every`` seconds, with the count since the last one: a
    flood of half-sent requests must not become a flood of log lines."""

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self.counts: Counter[str] = Counter()
        self.last: dict[str, float] = {}

    def __call__(self, what: str) -> None:
        self.counts[what] += 1
        now = time.monotonic()
        if now - self.last.get(what, -self.every) >= self.every:
            log.warning("HTTP: %s (%d since the last report)", what, self.counts[what])
            self.counts[what] = 0
            self.last[what] = now


def guarded_protocol(*, max_connections: int, header_timeout: float,
                     body_timeout: float) -> type[H11Protocol]:
    report = Report()

    class GuardedH11Protocol(H11Protocol):
        _timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                report(f"connection refused: {max_connections} open, the maximum")
                transport.write(BUSY)
                transport.close()
                return
            self._arm(header_timeout, self._headers_late)

        def data_received(self, data: bytes) -> None:
            waiting = self.conn.their_state
            if waiting is h11.IDLE and self._timer is None:
                self._arm(header_timeout, self._headers_late)  # a new request starts
            super().data_received(data)
            state = self.conn.their_state
            if state is h11.SEND_BODY:
                self._arm(body_timeout, self._body_late)
            elif state is not h11.IDLE:
                self._disarm()

        def on_response_complete(self) -> None:
            self._disarm()  # between requests: uvicorn's keep-alive timer
            super().on_response_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self, seconds: float, then: Any) -> None:
            self._disarm()
            self._timer = self.loop.call_later(seconds, then)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _headers_late(self) -> None:
            self._timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                if self.conn.trailing_data[0]:
                    report(f"request headers not complete within {header_timeout:g} s: "
                           "closed with 408")
                    self.transport.write(TIMEOUT)
                self.transport.close()

        def _body_late(self) -> None:
            self._timer = None
            if self.conn.their_state is h11.SEND_BODY and not self.transport.is_closing():
                if self.flow.read_paused:  # the application is behind, not the client
                    self._arm(body_timeout, self._body_late)
                    return
                report(f"request body paused for more than {body_timeout:g} s: closed")
                self.transport.close()

    return GuardedH11Protocol
