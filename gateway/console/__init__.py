"""The web console at ``/console``: pages for the people who keep the network running.

Server-rendered (Jinja2 templates and one CSS file shipped in this package, inline SVG
charts, a few lines of vanilla JS), so it works offline and on a slow hospital PC. Pages:
Network, Messages (browser, message, raw, replay), Unmapped codes, Studies, Lab exports,
Bus; login and logout. See docs/operations.md.

``console_router(console)`` gives every route; ``Console`` (``gateway.console.web``) holds
the parts a page reads (store, site files, trust boundary, ingest, bus).
"""

from __future__ import annotations

from fastapi import APIRouter

from gateway.console.login import login_router
from gateway.console.pages import pages_router
from gateway.console.web import Console


def console_router(console: Console) -> APIRouter:
    router = APIRouter()
    router.include_router(login_router(console))
    router.include_router(pages_router(console))
    return router


__all__ = ["Console", "console_router"]
