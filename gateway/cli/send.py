"""``gateway send FILE…``: an MLLP client for interface engineers.

Sends every message of every file (one connection, each message waits for its answer) and
prints one line per answer, with the message's MSH-10 beside it::

    lab.hl7#1 MSG00042 → AA
    lab.hl7#2 MSG00043 → AE 102 OBX^3^5^1 OBX-5 is not a valid NM

The gateway is ``--host``/``--port``, else ``$GATEWAY_HOST``/``$GATEWAY_MLLP_PORT`` (the
variables ``gateway serve`` reads), else 127.0.0.1:2575.

Exit status: 0 when every answer is AA/CA, 1 when any is not (or a message got no answer),
2 when the gateway cannot be reached or a file cannot be read.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import sys
from pathlib import Path
from typing import Any

from gateway.errors import ParseError
from gateway.hl7.mllp import MllpClient, client_ssl_context
from gateway.hl7.parser import parse, split_messages

OK_CODES = frozenset({"AA", "CA"})


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("send", help="send HL7 v2 files over MLLP and print the ACKs",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.add_argument("--host", default=None,
                   help="the gateway's address (default: $GATEWAY_HOST, else 127.0.0.1)")
    p.add_argument("--port", type=int, default=None,
                   help="its MLLP port (default: $GATEWAY_MLLP_PORT, else 2575)")
    p.add_argument("--tls", action="store_true", help="connect with TLS")
    p.add_argument("--ca", help="CA certificate (PEM) that signed the gateway's certificate")
    p.add_argument("--cert", help="client certificate (PEM) for mutual TLS")
    p.add_argument("--key", help="private key of --cert (if not in the same file)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for an answer")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    host = os.environ.get("GATEWAY_HOST") or "127.0.0.1"
    args.host = args.host or ("127.0.0.1" if host in ("0.0.0.0", "::") else host)  # noqa: S104
    try:
        args.port = args.port or int(os.environ.get("GATEWAY_MLLP_PORT") or 2575)
    except ValueError:
        _err("gateway send: GATEWAY_MLLP_PORT is not a port number")
        return 2
    try:
        batches = [(path.name, split_messages(path.read_bytes())) for path in args.files]
    except OSError as exc:
        _err(f"gateway send: cannot read {exc.filename}: {exc.strerror}")
        return 2
    ctx = client_ssl_context(args.ca, args.cert, args.key) if args.tls or args.cert else None
    try:
        return asyncio.run(_send_all(args, batches, ctx))
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        _err(f"gateway send: {args.host}:{args.port}: {type(exc).__name__}: {exc}")
        return 2


async def _send_all(args: argparse.Namespace, batches: list[tuple[str, list[str]]],
                    ctx: ssl.SSLContext | None) -> int:
    status = 0
    async with await MllpClient.connect(args.host, args.port, ssl_context=ctx,
                                        timeout=args.timeout) as client:
        for name, messages in batches:
            for n, text in enumerate(messages, start=1):
                answers = await client.send(text.encode("utf-8"))
                label = f"{name}#{n} {_control_id(text)}"
                if not answers:
                    _out(f"{label} → (no answer)")
                    status = 1
                for answer in answers:
                    line, ok = describe_ack(answer)
                    _out(f"{label} → {line}")
                    status = status if ok else 1
    return status


def _control_id(text: str) -> str:
    try:
        return parse(text).control_id or "(no MSH-10)"
    except ParseError:
        return "(unparseable)"


def describe_ack(answer: bytes) -> tuple[str, bool]:
    """``MSA-1 [ERR-3 ERR-2 ERR-8]…`` for one ACK, and whether it is AA/CA."""
    try:
        ack = parse(answer)
    except ParseError:
        return f"(not an ACK: {len(answer)} bytes)", False
    code = ack.get("MSA-1")
    parts = [code or "(no MSA-1)"]
    for err in ack.all("ERR"):
        loc = err.raw(2) or err.first(1).c(1)
        parts.append(" ".join(p for p in (err.get(3) or err.first(1).c(4), loc, err.get(8))
                              if p))
    return " ".join(parts), code in OK_CODES


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _err(line: str) -> None:
    sys.stderr.write(line + "\n")
