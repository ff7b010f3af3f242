"""Fixtures for the site adapters and lab exports: the shipped network, a real SqlStore."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from gateway.adapters.loader import Network, load_network
from gateway.store.sql import SqlStore
from tests.support import migrated_store

KEY = b"test-pseudonym-key-0123456789abcdef"
NETWORK_HEADER = ("site_subject_id,study_id,specimen_id,specimen_type,parent_specimen_id,"
                  "collected_at,test_code,test_system,test_name,value,unit,reference_range,"
                  "interpretation,result_status,performed_at,product_din")


@pytest.fixture(scope="session")
def network() -> Network:
    return load_network()


@pytest.fixture
def store(sqlite_url: str) -> Iterator[SqlStore]:
    with migrated_store(sqlite_url) as s:
        yield s


def csv_of(*rows: str) -> bytes:
    return ("\n".join((NETWORK_HEADER, *rows)) + "\n").encode()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(app: object) -> Iterator[str]:
    """Run ``app`` on uvicorn on a free port in a thread; yields the base URL."""
    import threading

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        threading.Event().wait(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(5)
