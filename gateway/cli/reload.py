"""``gateway reload``: make the running gateway re-read its site files.

Calls ``POST /admin/reload`` of the gateway named by ``--url``, else by the ``gateway.pid``
file in its data directory (``$GATEWAY_DATA_DIR``, default ./var), else the local HTTP
port. Exit 0: reloaded; 1: a site file is invalid (the answer names file, line and field;
the running configuration stays in force); 2: no gateway answered, or the caller lacks the
admin scope.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import httpx

from gateway.cli import remote


def register(sub: Any) -> None:
    parser = sub.add_parser("reload", help="make the running gateway re-read its site files",
                            description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    remote.add_arguments(parser, offline=False)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    url = remote.base_url(args)
    try:
        with remote.client(args) as http:
            response = http.post("/admin/reload")
    except httpx.HTTPError as exc:
        sys.stderr.write(f"gateway reload: {remote.unreachable(url, exc)}\n")
        return 2
    body = remote.answer(response)
    if response.status_code == 200:
        sys.stdout.write(f"reloaded: {body.get('sites')} sites ({url})\n")
        return 0
    if response.status_code == 422:
        sys.stderr.write(f"gateway reload: {body.get('detail')}\n  {body.get('error')}\n")
        return 1
    sys.stderr.write(f"gateway reload: {url} answered {response.status_code}: "
                     f"{body.get('detail', body)}\n")
    return 2
