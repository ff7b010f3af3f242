"""The ``gateway`` command: one subcommand per module in ``gateway.cli``.

Each module has ``register(subparsers)`` (adds its parser, sets ``func``) and ``run(args)``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from gateway import __version__
from gateway.observability import logs

COMMANDS = ("serve", "send", "check", "convert", "replay", "importer", "sites", "clients", "audit",
            "reload", "users")


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, object]]:
    parser = argparse.ArgumentParser(
        prog="gateway",
        description="HL7 v2 and lab exports in, pseudonymised FHIR R4 out.")
    parser.add_argument("--version", action="version", version=f"gateway {__version__}")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--log-format", default=os.environ.get("GATEWAY_LOG_FORMAT", "text"),
                        choices=list(logs.FORMATS),
                        help="text, or json: one object per line for log shippers "
                        "[GATEWAY_LOG_FORMAT]")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    owners: dict[str, object] = {}
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"gateway.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"gateway.cli.{name}":
                raise
            continue
        before = set(sub.choices)
        module.register(sub)
        owners.update({cmd: module for cmd in set(sub.choices) - before})
    return parser, owners


def main(argv: Sequence[str] | None = None) -> int:
    parser, owners = build_parser()
    args = parser.parse_args(argv)
    logs.configure(args.log_level, args.log_format)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    # httpx logs every request at INFO: `gateway token` printed two such lines around the
    # token, and a hub one per Subscription delivery (the receiver's URL); warnings stay
    logging.getLogger("httpx").setLevel(logging.WARNING)
    func = getattr(args, "func", None) or getattr(owners.get(args.command), "run", None)
    if func is None:
        parser.print_help()
        return 2
    return int(func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
