"""The hash chain on both databases: append, the append-only triggers, and
``gateway audit verify`` naming the first broken event after each kind of tampering."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text

from gateway.audit.event import Facts, audit_event
from gateway.cli.main import main
from gateway.errors import StoreError
from gateway.store.audit import AuditLog
from gateway.store.sql import SqlStore
from tests.support import migrated_store

KEY = b"k" * 32


def events(n: int) -> list[dict[str, object]]:
    return [audit_event(Facts("GET", f"/fhir/Observation/o{i}", "", 200, "client-a", None,
                              1_764_000_000 + i), node="n", key=KEY) for i in range(n)]


@pytest.fixture
def trail(database_url: str) -> Iterator[tuple[SqlStore, str]]:
    with migrated_store(database_url) as store:
        log = AuditLog(store)
        log.append(events(3))
        log.append(events(4))  # a second batch chains on the first
        yield store, database_url


def tamper(store: SqlStore, *statements: str) -> None:
    """What someone with the database owner's rights could do: triggers off, then SQL."""
    with store.engine.connect() as conn:
        if store.dialect == "sqlite":
            conn.exec_driver_sql("DROP TRIGGER audit_event_no_update")
            conn.exec_driver_sql("DROP TRIGGER audit_event_no_delete")
        else:
            conn.exec_driver_sql("ALTER TABLE audit_event DISABLE TRIGGER USER")
        for statement in statements:
            conn.execute(text(statement))
        conn.commit()


def verify(url: str, capsys: pytest.CaptureFixture[str], *more: str) -> tuple[int, str]:
    code = main(["audit", "verify", "--database-url", url, *more])
    return code, capsys.readouterr().out


def test_an_intact_trail_verifies_and_names_its_head(
        trail: tuple[SqlStore, str], capsys: pytest.CaptureFixture[str]) -> None:
    store, url = trail
    code, out = verify(url, capsys)
    assert code == 0, out
    assert "intact: 7 events; head event 7" in out
    assert AuditLog(store).read(7) is not None and b'"id":"7"' in AuditLog(store).read(7)


def test_the_database_refuses_update_and_delete_of_an_event(
        trail: tuple[SqlStore, str]) -> None:
    store, _ = trail
    for statement in ("UPDATE audit_event SET agent = 'x' WHERE seq = 2",
                      "DELETE FROM audit_event WHERE seq = 2"):
        with pytest.raises(StoreError), store.transaction() as tx:
            tx.conn.execute(text(statement))
    assert AuditLog(store).count() == 7


def test_a_changed_event_is_named(trail: tuple[SqlStore, str],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    store, url = trail
    content = AuditLog(store).read(5)
    assert content is not None
    forged = content.replace(b"client-a", b"client-z")
    with store.engine.connect() as conn:  # parameters need a bound statement: do it here
        if store.dialect == "sqlite":
            conn.exec_driver_sql("DROP TRIGGER audit_event_no_update")
        else:
            conn.exec_driver_sql("ALTER TABLE audit_event DISABLE TRIGGER USER")
        conn.execute(text("UPDATE audit_event SET content = :c WHERE seq = 5"), {"c": forged})
        conn.commit()
    code, out = verify(url, capsys)
    assert code == 1
    assert "broken at event 5: its content does not match its hash (changed)" in out


def test_a_removed_event_is_named(trail: tuple[SqlStore, str],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    store, url = trail
    tamper(store, "DELETE FROM audit_event WHERE seq = 4")
    code, out = verify(url, capsys)
    assert code == 1
    assert "broken at event 4: event 4 is missing (removed)" in out


def test_two_swapped_events_are_named(trail: tuple[SqlStore, str],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    store, url = trail
    tamper(store, "UPDATE audit_event SET seq = -3 WHERE seq = 3",
           "UPDATE audit_event SET seq = 3 WHERE seq = 5",
           "UPDATE audit_event SET seq = 5 WHERE seq = -3")
    code, out = verify(url, capsys)
    assert code == 1
    assert "broken at event 3: its link does not match" in out


def test_a_changed_search_column_is_named(trail: tuple[SqlStore, str],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    store, url = trail
    tamper(store, "UPDATE audit_event SET agent = 'someone-else' WHERE seq = 6")
    code, out = verify(url, capsys)
    assert code == 1
    assert "broken at event 6: its search columns agent do not match" in out


def test_cut_off_newest_events_fail_against_the_recorded_head(
        trail: tuple[SqlStore, str], capsys: pytest.CaptureFixture[str]) -> None:
    store, url = trail
    head = f"7:{AuditLog(store).hash_of(7)}"
    assert verify(url, capsys, "--expect-head", head)[0] == 0
    tamper(store, "DELETE FROM audit_event WHERE seq = 7")
    code, out = verify(url, capsys, "--expect-head", head)
    assert code == 1
    assert "event 7, the recorded head, is gone" in out


def test_an_archived_beginning_verifies_from_its_recorded_anchor(
        trail: tuple[SqlStore, str], capsys: pytest.CaptureFixture[str]) -> None:
    store, url = trail
    anchor = f"3:{AuditLog(store).hash_of(3)}"
    tamper(store, "DELETE FROM audit_event WHERE seq <= 3")
    code, out = verify(url, capsys)
    assert code == 1 and "events 1 to 3 are missing" in out
    with store.transaction() as tx:
        tx.conn.execute(text("INSERT INTO store_setting (name, value) "
                             "VALUES ('audit_archived', :v)"), {"v": anchor})
    code, out = verify(url, capsys)
    assert code == 0 and "intact: 4 events; head event 7" in out


def test_verify_finds_the_database_from_the_data_dir(
        tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    data_dir = Path(str(tmp_path)) / "var"
    data_dir.mkdir()
    with migrated_store(f"sqlite:///{data_dir / 'gateway.db'}") as store:
        AuditLog(store).append(events(2))
    assert main(["audit", "verify", "--data-dir", str(data_dir)]) == 0
    assert "intact: 2 events; head event 2" in capsys.readouterr().out


def test_verify_exits_2_when_the_database_cannot_be_read(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "verify", "--database-url",
                 "postgresql://nobody@127.0.0.1:1/none"]) == 2
