"""How the command-line tools reach the gateway's data without losing any.

By default a tool talks to the RUNNING gateway through its HTTP API: ``--url``, else the
address in ``<data dir>/gateway.pid`` (written by ``gateway serve``), else
``http://127.0.0.1:$GATEWAY_HTTP_PORT`` (8080). With ``--data-dir`` or ``--database-url``
given explicitly it works offline on that EXISTING directory or database; it never creates
a database or a pseudonym key unless ``--init`` says so (a new key splits every patient
into new pseudonyms).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from gateway import pidfile
from gateway.config import Settings, settings_from
from gateway.errors import ConfigError
from gateway.mapping.pseudonym import KEY_FILE_ENV, KEY_FILE_NAME, read_key

DEFAULT_DATA_DIR = Path("./var")


def add_arguments(parser: argparse.ArgumentParser, *, offline: bool = True) -> None:
    """``--url``/``--token`` (the running gateway) and, with ``offline``, the flags of an
    explicit data directory or database."""
    remote = parser.add_argument_group("the running gateway (default)")
    remote.add_argument("--url", default=None,
                        help="its HTTP address (default: from <data dir>/gateway.pid, else "
                        "http://127.0.0.1:$GATEWAY_HTTP_PORT, 8080) [GATEWAY_URL]")
    remote.add_argument("--token", default=None,
                        help="bearer access token of a client allowed to do this "
                        "(admin scope; ingest for import) [GATEWAY_TOKEN]")
    if not offline:
        return
    local = parser.add_argument_group("offline, on an existing data directory or database")
    local.add_argument("--data-dir", dest="data_dir", type=Path, default=None,
                       help="the gateway's data directory (its SQLite database and key)")
    local.add_argument("--database-url", dest="database_url", default=None,
                       help="sqlite:///file or postgresql://… of the gateway's store")
    local.add_argument("--sites", type=Path, default=None,
                       help="directory of site files [GATEWAY_SITES]")
    local.add_argument("--pseudonym-key-file", dest="pseudonym_key_file", type=Path,
                       default=None, help="the pseudonym key [GATEWAY_PSEUDONYM_KEY_FILE]")
    local.add_argument("--init", action="store_true",
                       help="create the database and the pseudonym key if missing")


def offline(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "data_dir", None) or getattr(args, "database_url", None))


def base_url(args: argparse.Namespace, environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    if args.url or env.get("GATEWAY_URL"):
        return str(args.url or env["GATEWAY_URL"]).rstrip("/")
    data_dir = Path(env.get("GATEWAY_DATA_DIR") or DEFAULT_DATA_DIR)
    running = pidfile.read(data_dir)
    if running is not None:
        return running.url
    return f"http://127.0.0.1:{env.get('GATEWAY_HTTP_PORT') or 8080}"


def client(args: argparse.Namespace) -> httpx.Client:
    token = args.token or os.environ.get("GATEWAY_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=base_url(args), headers=headers, timeout=600)


def unreachable(url: str, exc: Exception) -> str:
    return (f"no gateway answers at {url} ({type(exc).__name__}): start it with "
            "'gateway serve', give --url, or work offline with --data-dir/--database-url")


@dataclass(frozen=True, slots=True)
class Local:
    settings: Settings
    key: bytes


def local(args: argparse.Namespace) -> Local:
    """The settings and key of an explicit, existing data directory or database; raises
    ConfigError naming what is missing (``--init`` creates it)."""
    settings = settings_from(args)
    if getattr(args, "data_dir", None) is None and not os.environ.get("GATEWAY_DATA_DIR"):
        settings.data_dir = DEFAULT_DATA_DIR
    url = settings.resolved_database_url()
    init = bool(getattr(args, "init", False))
    if url.startswith("sqlite:///") and not init:
        path = Path(url.removeprefix("sqlite:///"))
        if not path.is_file():
            raise ConfigError(f"no gateway database at {path}: give the data directory of "
                              "the gateway (--data-dir), or --init to create a new one")
    return Local(settings, _key(settings, init))


def _key(settings: Settings, init: bool) -> bytes:
    from gateway.mapping.pseudonym import load_or_create_key

    configured = settings.pseudonym_key_file or os.environ.get(KEY_FILE_ENV)
    if configured:
        return read_key(Path(configured))
    path = settings.data_dir / KEY_FILE_NAME
    if not path.is_file() and not init:
        raise ConfigError(f"no pseudonym key at {path}: give the gateway's key "
                          "(--pseudonym-key-file) or --init to create a new one")
    return load_or_create_key(settings.data_dir)


def answer(response: httpx.Response) -> Any:
    """The JSON body, or the text of a non-JSON answer."""
    try:
        return response.json()
    except ValueError:
        return {"status": response.status_code, "text": response.text[:500]}
