"""A real HTTP receiver for rest-hook notifications: a threaded ``http.server`` on a free
port that records every request (method, path, headers, body, arrival time). ``down()``
closes the socket (connection refused), ``up()`` listens again on the same port."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() on arrival

    def json(self) -> Any:
        return orjson.loads(self.body)


class Receiver:
    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.received: list[Received] = []
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                with receiver._lock:
                    receiver.received.append(Received(
                        self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                        body, time.time()))
                self.send_response(receiver.status)
                self.send_header("content-length", "0")
                self.end_headers()

            do_POST = do_PUT = _record  # noqa: N815 - http.server's names

            def log_message(self, format: str, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def events(self, kind: str = "event-notification") -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.headers.get("x-subscription-event") == kind]

    async def wait_for(self, predicate: Any, seconds: float = 20.0) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with self._lock:
                if predicate(list(self.received)):
                    return
            await asyncio.sleep(0.02)
        raise AssertionError(f"receiver: condition not met in {seconds} s; "
                             f"got {len(self.received)} requests")
