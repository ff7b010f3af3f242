"""``gateway serve``: run the gateway (HTTP + MLLP + relay/projector) until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging

from gateway.config import add_arguments, settings_from
from gateway.errors import ConfigError

log = logging.getLogger("gateway")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("serve", help="run the gateway",
                            description="Run the gateway: HTTP (FHIR API, /hl7v2, /admin) and "
                            "MLLP listeners in one process. Every flag has a GATEWAY_* "
                            "environment equivalent.")
    add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gateway.runtime import serve

    try:
        settings = settings_from(args)
        asyncio.run(serve(settings))
    except ConfigError as exc:
        log.error("refusing to start: %s", exc)
        return 2
    return 0
