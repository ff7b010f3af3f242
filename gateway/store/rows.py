"""Many rows into one table at once: ``COPY`` on PostgreSQL, one executemany on SQLite.

Every write path that writes more than a row per table (the ingest write group, the
projection, index maintenance, the bulk load) goes through ``write_rows`` (rows as tuples
of every column in table order) or ``write_copy`` (rows already formatted as COPY data,
``gateway.store.projection``). The statements are built once from the schema: column
names never come from input.
"""

from __future__ import annotations

import struct
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql

from gateway.store import schema as s
from gateway.store.session import Session

Row = tuple[Any, ...]

_PG_TYPES = {"VARCHAR": "text", "TEXT": "text", "INTEGER": "int4", "BIGINT": "int8",
             "FLOAT": "float8", "BOOLEAN": "bool", "BYTEA": "bytea"}
# binary COPY framing (PostgreSQL's COPY file format): header with no flags, and trailer
BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
BINARY_TRAILER = struct.pack("!h", -1)


class RowWrite:
    """How rows of one table are written: the SQLite INSERT, the PostgreSQL COPY and, for
    a binary COPY, the PostgreSQL type of each column."""

    __slots__ = ("insert", "copy", "types")

    def __init__(self, table: Table, binary: bool) -> None:
        names = ", ".join(f'"{c.name}"' for c in table.columns)
        marks = ", ".join("?" * len(table.columns))
        self.insert = f"INSERT INTO {table.name} ({names}) VALUES ({marks})"  # noqa: S608
        self.types: list[str] | None = None
        if not binary:
            self.copy = f"COPY {table.name} ({names}) FROM STDIN"
            return
        dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
        self.types = [_PG_TYPES[c.type.compile(dialect=dialect).split("(")[0].split()[0]]
                      for c in table.columns]
        self.copy = f"COPY {table.name} ({names}) FROM STDIN (FORMAT BINARY)"


# Binary for the resource rows (their values' types are fixed here; no hex text for the
# content); text for index rows, whose values come from resource elements as they are.
ROW_WRITES = {table.name: RowWrite(table, binary=table in (s.resource, s.resource_version))
              for table in (s.resource, s.resource_version, *s.INDEX_TABLES.values())}


def write_rows(session: Session, table: Table, rows: list[Row]) -> None:
    """Rows holding every column of ``table`` in table order."""
    if not rows:
        return
    how = ROW_WRITES[table.name]
    if not session.postgresql:
        session.conn.exec_driver_sql(how.insert, rows)
        return
    with session.driver_cursor().copy(how.copy) as copy:
        if how.types is not None:
            copy.set_types(how.types)
        for row in rows:
            copy.write_row(row)


def write_copy(session: Session, table: Table, data: bytes) -> None:
    """Rows of ``table`` already formatted as COPY data (binary ones without framing): one
    COPY (PostgreSQL only)."""
    if not data:
        return
    how = ROW_WRITES[table.name]
    if how.types is not None:
        data = BINARY_HEADER + data + BINARY_TRAILER
    with session.driver_cursor().copy(how.copy) as copy:
        copy.write(data)
