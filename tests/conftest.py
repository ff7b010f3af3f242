"""Shared fixtures: corpus paths, a fresh PostgreSQL database per test session, SQLite files."""

from __future__ import annotations

import logging
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from gateway.store.sql import SqlStore
from tests import logcheck
from tests.support import migrated_store

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
FHIR_SCHEMA = ROOT.parent / "shared" / "fhir" / "fhir.schema.json"
PG_ADMIN_URL = os.environ.get("GATEWAY_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")

# Hypothesis: "suite" for `make test` (the default number of examples, the same ones every
# run so that the suite is deterministic; no per-example deadline: the machine is shared and
# the first example pays for loading site files); "fuzz" for `make fuzz`
# (HYPOTHESIS_PROFILE=fuzz): fifty times the examples, new ones every run.
_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile("suite", deadline=None, derandomize=True,
                          suppress_health_check=_SLOW_OK)
settings.register_profile("fuzz", deadline=None, max_examples=5_000,
                          suppress_health_check=_SLOW_OK)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))


@pytest.fixture(scope="session")
def corpus() -> Path:
    assert CORPUS.is_dir(), f"the shared corpus is expected at {CORPUS}"
    return CORPUS


def _pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The admin URL of the machine's PostgreSQL. In CI it must be there: no skip."""
    if not _pg_available():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not reachable on 127.0.0.1:5432 in CI")
        subprocess.run("pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
                       shell=True, check=False)
        if not _pg_available():
            pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    return PG_ADMIN_URL


def make_pg_database(admin_url: str) -> tuple[str, str]:
    """Create a fresh database; returns (sqlalchemy url, name)."""
    import psycopg

    name = f"gw_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", name


def drop_pg_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (dropped afterwards)."""
    url, name = make_pg_database(pg_server)
    yield url
    drop_pg_database(pg_server, name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'gateway.db'}"


@pytest.fixture
def store(database_url: str) -> Iterator[SqlStore]:
    """A migrated store on each database."""
    with migrated_store(database_url) as s:
        yield s


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Both databases, for tests that must behave the same on each."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gateway.db'}"
        return
    admin = request.getfixturevalue("pg_server")
    url, name = make_pg_database(admin)
    yield url
    drop_pg_database(admin, name)


# --- no patient value in any log line of the run (tests/logcheck.py) -----------------------
def pytest_sessionstart(session: pytest.Session) -> None:
    # the gateway's INFO lines (access lines among them) are made, and so checked
    logging.getLogger("gateway").setLevel(logging.INFO)
    logging.getLogger().addHandler(logcheck.CAPTURE)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    logging.getLogger().removeHandler(logcheck.CAPTURE)
    capture = logcheck.CAPTURE
    identities = logcheck.identity_strings(logcheck.test_sources())
    findings = capture.findings(identities)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if not findings:
        return
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if reporter is not None:
        reporter.write_sep("=", f"patient data in {len(findings)} log line(s)", red=True)
        for f in findings[:50]:
            reporter.write_line(f"{f.where} record #{f.position}: {f.value!r} in …{f.excerpt}…")
