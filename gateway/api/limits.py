"""Request body limits per endpoint family, enforced while the body is read.

``BodyLimits`` (ASGI middleware) answers ``413`` before reading anything when
``Content-Length`` announces more than the endpoint takes, and counts the bytes of a
chunked body as they arrive: past the limit the application's ``receive`` raises
``HTTPException(413)`` and no more is read. Under ``/fhir`` the answer is an
OperationOutcome (issue code ``too-long``); elsewhere FastAPI's ``{"detail": …}``.

``json_depth`` bounds the nesting of a parsed FHIR body (a resource nests 10-20 deep).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

WRITES = frozenset({"POST", "PUT", "PATCH"})
MAX_FHIR_BODY = 10 * 2**20
MAX_LAB_EXPORT = 50 * 2**20
MAX_JSON_DEPTH = 64
MAX_URL = 8192  # bytes of path and query (h11 refuses request heads beyond 16 KiB)


@dataclass(frozen=True, slots=True)
class BodyLimit:
    prefix: str  # path prefix: "/fhir", "/hl7v2", "/lab-exports"
    max_bytes: int


def default_limits(max_message_size: int) -> list[BodyLimit]:
    return [BodyLimit("/hl7v2", max_message_size), BodyLimit("/lab-exports", MAX_LAB_EXPORT),
            BodyLimit("/fhir", MAX_FHIR_BODY)]


class BodyLimits:
    def __init__(self, app: ASGIApp, limits: Sequence[BodyLimit],
                 default: int = MAX_FHIR_BODY) -> None:
        self.app = app
        self.limits = sorted(limits, key=lambda limit: -len(limit.prefix))
        self.default = default

    def limit_for(self, path: str) -> int:
        for limit in self.limits:
            if path == limit.prefix or path.startswith(limit.prefix + "/"):
                return limit.max_bytes
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in WRITES:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        limit = self.limit_for(path)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _too_large(path, limit, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, _text(limit), headers={"Connection": "close"})
            return message

        await self.app(scope, counted, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


def _text(limit: int) -> str:
    return f"request body larger than {limit} bytes, the limit of this endpoint"


async def _too_large(path: str, limit: int, send: Send) -> None:
    if path == "/fhir" or path.startswith("/fhir/"):
        body = orjson.dumps({"resourceType": "OperationOutcome", "issue": [
            {"severity": "error", "code": "too-long", "diagnostics": _text(limit)}]})
        media = b"application/fhir+json"
    else:
        body, media = orjson.dumps({"detail": _text(limit)}), b"application/json"
    await send({"type": "http.response.start", "status": 413, "headers": [
        (b"content-type", media), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def json_depth_exceeds(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``value`` (parsed JSON) nests deeper than ``limit`` (iterative)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values()
                         if isinstance(child, dict | list))
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node
                         if isinstance(child, dict | list))
    return False
