"""The audit table (``audit_event``): append, read, search, walk. Nothing here updates or
deletes a row (and the database's triggers would refuse it).

Appends are serialised: SQLite's ``BEGIN IMMEDIATE`` and, on PostgreSQL, a transaction-level
advisory lock, so that two writers (two processes on one database) never race for the
next ``seq``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, and_, or_, select, text

from gateway.audit.chain import GENESIS, canonical, columns, link_hash
from gateway.store import schema as s
from gateway.store.sql import SqlStore

A = s.audit_event.c
_COLUMNS = ("seq", "recorded_ms", "agent", "type", "subtype", "action", "outcome", "entity",
            "content", "prev_hash", "hash")
_INSERT = f"INSERT INTO audit_event ({', '.join(_COLUMNS)}) VALUES {{}}"  # noqa: S608
_COPY = f"COPY audit_event ({', '.join(_COLUMNS)}) FROM STDIN"
_ROWS_PER_INSERT = 500  # 5,500 parameters: below SQLite's and PostgreSQL's limits


@dataclass
class AuditQuery:
    """Search criteria: each list is OR within, the fields AND between (None: any)."""

    agents: list[list[str]] = field(default_factory=list)
    entities: list[list[str]] = field(default_factory=list)
    types: list[list[str]] = field(default_factory=list)  # "code" or "system|code"
    subtypes: list[list[str]] = field(default_factory=list)
    outcomes: list[list[str]] = field(default_factory=list)
    actions: list[list[str]] = field(default_factory=list)
    ranges: list[tuple[int | None, int | None]] = field(default_factory=list)  # [low, high)
    newest_first: bool = True
    after: int | None = None  # keyset cursor: the seq after (in sort order) which to start
    count: int = 50


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _token(column: ColumnElement[str], value: str) -> ColumnElement[bool]:
    """A "\\nsystem|code\\n" list holds ``code`` (any system) or ``system|code``."""
    needle = f"\n{value}\n" if "|" in value else f"|{value}\n"
    return column.like(f"%{_escape(needle)}%", escape="\\")


def _criteria(q: AuditQuery) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    where += [A.agent.in_(values) for values in q.agents]
    where += [or_(*(A.entity.like(f"%{_escape(chr(10) + v + chr(10))}%", escape="\\")
                    for v in values)) for values in q.entities]
    for column, groups in ((A.type, q.types), (A.subtype, q.subtypes)):
        where += [or_(*(_token(column, v) for v in values)) for values in groups]
    where += [A.outcome.in_(values) for values in q.outcomes]
    where += [A.action.in_(values) for values in q.actions]
    for low, high in q.ranges:
        if low is not None:
            where.append(A.recorded_ms >= low)
        if high is not None:
            where.append(A.recorded_ms < high)
    if q.after is not None:
        where.append(A.seq < q.after if q.newest_first else A.seq > q.after)
    return where


class AuditLog:
    """The audit table of one store."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store

    def append(self, events: Sequence[dict[str, Any]],
               derived: Sequence[dict[str, Any]] | None = None) -> int:
        """Append events (without ``id``; each gets ``id`` = its ``seq``) in one
        transaction, chained to the current head; ``derived``: their search columns, when
        the caller has them (else derived here). Returns the last ``seq``."""
        cols = derived if derived is not None else [columns(e) for e in events]
        with self.store.transaction() as tx:
            conn = tx.conn
            if self.store.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('gateway-audit'))"))
            head = conn.execute(select(A.seq, A.hash).order_by(A.seq.desc()).limit(1)).first()
            seq, prev = (head.seq, head.hash) if head else (0, GENESIS)
            rows = []
            for event, c in zip(events, cols, strict=True):
                seq += 1
                content = canonical({**event, "id": str(seq)})
                digest = link_hash(prev, seq, content)
                rows.append((seq, c["recorded_ms"], c["agent"], c["type"], c["subtype"],
                             c["action"], c["outcome"], c["entity"], content, prev, digest))
                prev = digest
            for start in range(0, len(rows), _ROWS_PER_INSERT):
                self._insert(conn, rows[start:start + _ROWS_PER_INSERT])
        return seq

    def _insert(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        """One multi-row INSERT through the driver: one statement per chunk, so that the
        writer thread does not give the GIL away and wait for it back once per row (an
        ``executemany`` steps the statement, releasing the GIL, for every row)."""
        if self.store.dialect == "postgresql":
            self._copy(conn, rows)
            return
        row = f"({', '.join(['?'] * len(_COLUMNS))})"
        params = [value for values in rows for value in values]
        conn.exec_driver_sql(_INSERT.format(", ".join([row] * len(rows))), tuple(params))

    @staticmethod
    def _copy(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        """PostgreSQL: COPY in the same transaction (psycopg formats the rows in C;
        a multi-row INSERT spends more on adapting its thousands of parameters)."""
        driver = conn.connection.driver_connection
        assert driver is not None
        with driver.cursor() as cursor, cursor.copy(_COPY) as copy:
            for values in rows:
                copy.write_row(values)

    def read(self, seq: int) -> bytes | None:
        with self.store._read() as conn:
            row = conn.execute(select(A.content).where(A.seq == seq)).first()
        return bytes(row.content) if row else None

    def search(self, q: AuditQuery) -> tuple[list[tuple[int, bytes]], bool]:
        """One page: (seq, content) in the asked order, and whether more follow."""
        order = A.seq.desc() if q.newest_first else A.seq.asc()
        query = (select(A.seq, A.content).where(and_(True, *_criteria(q)))
                 .order_by(order).limit(q.count + 1))
        with self.store._read() as conn:
            rows = conn.execute(query).all()
        return [(r.seq, bytes(r.content)) for r in rows[:q.count]], len(rows) > q.count

    def hash_of(self, seq: int) -> str | None:
        with self.store._read() as conn:
            row = conn.execute(select(A.hash).where(A.seq == seq)).first()
        return str(row.hash) if row else None

    def count(self) -> int:
        with self.store._read() as conn:
            return int(conn.execute(select(A.seq).order_by(A.seq.desc()).limit(1))
                       .scalar_one_or_none() or 0)

    def walk(self, batch: int = 1000) -> Iterator[Row[Any]]:
        """Every row in ``seq`` order, in batches (for ``gateway audit verify``)."""
        after = None
        while True:
            query = select(s.audit_event).order_by(A.seq).limit(batch)
            if after is not None:
                query = query.where(A.seq > after)
            with self.store._read() as conn:
                rows = conn.execute(query).all()
            yield from rows
            if len(rows) < batch:
                return
            after = rows[-1].seq

    def anchor(self) -> tuple[int, str]:
        """Where the trail starts: (first seq, the hash before it). An archived trail
        starts after the archive's last event (``store_setting`` ``audit_archived``)."""
        c = s.store_setting.c
        with self.store._read() as conn:
            value = conn.execute(select(c.value).where(c.name == "audit_archived")
                                 ).scalar_one_or_none()
        if not value:
            return 1, GENESIS
        seq, _, digest = value.partition(":")
        return int(seq) + 1, digest
