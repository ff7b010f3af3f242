"""``gateway clients …`` and ``gateway token``: register API clients and get tokens.

    gateway clients new ID --scopes "…" [--studies A,B] [--sites X] --clients FILE \\
        --key-out KEY.pem [--alg ES384|RS384] [--name TEXT]
                                   a key pair (private key 0600) and the client in FILE
    gateway clients check FILE [--sites DIR]
                                   validate a clients file (file, line, field on error)
    gateway token --clients FILE --client ID --key KEY.pem [--scope "…"] [--url URL]
                                   sign a client assertion, post it to URL's token endpoint
                                   and print the access token (for curl: -H "Authorization:
                                   Bearer $(gateway token …)"); --assertion prints only the
                                   signed assertion (for a curl to /auth/token)
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt

from gateway.adapters.loader import EXAMPLE_SITES, load_network
from gateway.errors import ConfigError
from gateway.security import keys
from gateway.security.clients import add_client, load_clients, scope_error
from gateway.security.tokens import ASSERTION_TYPE


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("clients", help="API clients: new, check",
                                   description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="clients_command", metavar="SUBCOMMAND", required=True)
    new = sub.add_parser("new", help="generate a key pair and register a client")
    new.add_argument("id")
    new.add_argument("--name", help="a human name (default: the id)")
    new.add_argument("--scopes", required=True, help='SMART v2 scopes, space-separated')
    new.add_argument("--studies", help="comma-separated: study ids, system|value, "
                     "ResearchStudy/<id>")
    new.add_argument("--sites", help="comma-separated site ids")
    new.add_argument("--clients", type=Path, required=True, help="the clients file")
    new.add_argument("--key-out", type=Path, required=True, help="private key file (PEM)")
    new.add_argument("--alg", choices=keys.ALGORITHMS, default="ES384")
    new.add_argument("--site-dir", type=Path, default=EXAMPLE_SITES,
                     help="site files and studies.yaml to check against")
    new.set_defaults(func=run_new)
    check = sub.add_parser("check", help="validate a clients file")
    check.add_argument("file", type=Path)
    check.add_argument("--site-dir", type=Path, default=EXAMPLE_SITES)
    check.set_defaults(func=run_check)

    token = subparsers.add_parser("token", help="get an access token (SMART Backend Services)",
                                  description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    token.add_argument("--clients", type=Path, required=True)
    token.add_argument("--client", required=True, help="client id")
    token.add_argument("--key", type=Path, required=True, help="the client's private key")
    token.add_argument("--scope", help="requested scopes (default: all the client may have)")
    token.add_argument("--url", default="http://127.0.0.1:8080",
                       help="the gateway's base URL (default http://127.0.0.1:8080)")
    token.add_argument("--assertion", action="store_true",
                       help="print the signed client assertion instead of posting it")
    token.add_argument("--site-dir", type=Path, default=EXAMPLE_SITES)
    token.set_defaults(func=run_token)


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def _list(text: str | None) -> list[str] | None:
    return [p.strip() for p in text.split(",") if p.strip()] if text is not None else None


def run_new(args: argparse.Namespace) -> int:
    scopes = args.scopes.split()
    problems = [p for p in map(scope_error, scopes) if p]
    if problems or not scopes:
        _err(f"--scopes: {'; '.join(problems) or 'give at least one scope'}")
        return 2
    if args.key_out.exists():
        _err(f"{args.key_out} exists: not overwriting a key")
        return 2
    key = keys.generate(args.alg)
    entry: dict[str, Any] = {"id": args.id, "name": args.name or args.id,
                             "jwks": {"keys": [keys.public_jwk(key)]}, "scopes": scopes}
    for name in ("studies", "sites"):
        if (values := _list(getattr(args, name))) is not None:
            entry[name] = values
    before = args.clients.read_bytes() if args.clients.exists() else None
    try:
        add_client(args.clients, entry)
        load_clients(args.clients, load_network(args.site_dir))
    except ConfigError as exc:
        if before is None:
            args.clients.unlink(missing_ok=True)
        else:
            args.clients.write_bytes(before)  # the file as it was: the new client is wrong
        _err(exc.message)
        return 2
    keys.write_private(key, args.key_out)
    _out(f"client {args.id} added to {args.clients}; private key {args.key_out} (0600, "
          f"kid {entry['jwks']['keys'][0]['kid']})")
    return 0


def run_check(args: argparse.Namespace) -> int:
    try:
        clients = load_clients(args.file, load_network(args.site_dir))
    except ConfigError as exc:
        _err(exc.message)
        return 1
    _out(f"{args.file}: {len(clients)} clients OK")
    return 0


def client_assertion(client_id: str, key: keys.PrivateKey, token_url: str) -> str:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": token_url, "iat": now,
              "exp": now + 240, "jti": uuid.uuid4().hex}
    jwk = keys.public_jwk(key)
    return jwt.encode(claims, key, algorithm=jwk["alg"], headers={"kid": jwk["kid"]})


def run_token(args: argparse.Namespace) -> int:
    try:
        client = load_clients(args.clients, load_network(args.site_dir)).get(args.client)
        key = keys.read_private(args.key)
    except ConfigError as exc:
        _err(exc.message)
        return 2
    if client is None:
        _err(f"{args.clients}: no client {args.client}")
        return 2
    base = args.url.rstrip("/")
    try:
        config = httpx.get(f"{base}/.well-known/smart-configuration", timeout=10).json()
        token_url = str(config["token_endpoint"])
        assertion = client_assertion(client.id, key, token_url)
        if args.assertion:
            _out(assertion)
            return 0
        answer = httpx.post(token_url, timeout=10, data={
            "grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
            "scope": args.scope or " ".join(sorted(client.scopes))})
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        _err(f"{base}: no SMART token endpoint answered ({exc})")
        return 1
    body = answer.json()
    if answer.status_code != 200:
        _err(f"{token_url}: {answer.status_code} {body.get('error')}: "
              f"{body.get('error_description')}")
        return 1
    _out(body["access_token"])
    return 0
