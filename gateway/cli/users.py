"""``gateway users add``: people who log in to the web console (``/console``).

    gateway users add NAME --clients FILE --scopes "…" [--studies A,B] [--sites X]
                      [--name TEXT] [--oidc-subject SUB] [--password-stdin | --no-password]
                                   prompts for the password twice (or reads one line from
                                   standard input) and writes NAME with its scrypt hash to
                                   the clients file's users: (replacing a user of that name)

A user has scopes and study/site restrictions exactly like a client
(``system/gateway.admin`` for the operations pages, ``system/gateway.raw`` to see raw
messages, ``system/ResearchStudy.rs system/ResearchSubject.rs`` for the studies page).
``--oidc-subject`` lets the user log in through the OpenID Connect issuer instead (the ID
token's ``sub``); ``--no-password`` makes that the only way.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from gateway.adapters.loader import EXAMPLE_SITES, load_network
from gateway.errors import ConfigError
from gateway.security.clients import load_access, scope_error
from gateway.security.users import add_user, hash_password

MIN_LENGTH = 10


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("users", help="console users: add",
                                   description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="users_command", metavar="SUBCOMMAND", required=True)
    add = sub.add_parser("add", help="add (or replace) a console user; prompts for a password")
    add.add_argument("user")
    add.add_argument("--clients", type=Path, required=True, help="the clients file")
    add.add_argument("--scopes", required=True, help="SMART v2 and gateway scopes")
    add.add_argument("--name", help="a human name (default: the user name)")
    add.add_argument("--studies", help="comma-separated study ids (restricts the user)")
    add.add_argument("--sites", help="comma-separated site ids (restricts the user)")
    add.add_argument("--oidc-subject", help="the OpenID Connect issuer's sub of this person")
    how = add.add_mutually_exclusive_group()
    how.add_argument("--password-stdin", action="store_true",
                     help="read the password from the first line of standard input")
    how.add_argument("--no-password", action="store_true",
                     help="no local password (log in through OIDC only)")
    add.add_argument("--site-dir", type=Path, default=EXAMPLE_SITES)
    add.set_defaults(func=run_add)


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def _password(args: argparse.Namespace) -> str | None:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass(f"password for {args.user}: ")
    if first != getpass.getpass("again: "):
        raise ValueError("the two passwords differ")
    return first


def run_add(args: argparse.Namespace) -> int:
    scopes = args.scopes.split()
    problems = [p for p in map(scope_error, scopes) if p]
    if problems or not scopes:
        _err(f"--scopes: {'; '.join(problems) or 'give at least one scope'}")
        return 2
    if args.no_password and not args.oidc_subject:
        _err("--no-password needs --oidc-subject: the user could not log in at all")
        return 2
    entry: dict[str, Any] = {"id": args.user, "name": args.name or args.user,
                             "scopes": scopes}
    if not args.no_password:
        try:
            password = _password(args)
        except (ValueError, EOFError) as exc:
            _err(f"password: {exc}")
            return 2
        if password is None or len(password) < MIN_LENGTH:
            _err(f"password: at least {MIN_LENGTH} characters")
            return 2
        entry["password"] = hash_password(password)
    if args.oidc_subject:
        entry["oidc_subject"] = args.oidc_subject
    for name in ("studies", "sites"):
        value = getattr(args, name)
        if value is not None:
            entry[name] = [p.strip() for p in value.split(",") if p.strip()]
    before = args.clients.read_bytes() if args.clients.exists() else None
    try:
        add_user(args.clients, entry)
        load_access(args.clients, load_network(args.site_dir))
    except (ConfigError, ValueError) as exc:
        if before is None:
            args.clients.unlink(missing_ok=True)
        else:
            args.clients.write_bytes(before)  # the file as it was: the new user is wrong
        _err(getattr(exc, "message", None) or str(exc))
        return 2
    sys.stdout.write(f"user {args.user} written to {args.clients}\n")
    return 0
