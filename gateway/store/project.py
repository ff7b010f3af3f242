"""The projector's batch write: many ``apply_version`` calls in a few statements.

Same outcome as calling ``SqlTransaction.apply_version`` for each resource in order: a
version is stored only when it is newer than what the store holds (same or older → no-op),
every newer version lands in the history, the current row and its index rows end at the
newest. Per batch: one SELECT … FOR UPDATE of the current rows per resource type (``res_id
IN``, an index search), one multi-row write per table (COPY on PostgreSQL, executemany of
plain tuples on SQLite), one DELETE per index table and resource type for the keys that had
rows. At the hub this is what lets one projector keep up with a network's edges (see
bench/bus.py).

The work is split in two so that the projector can overlap them (the next batch is prepared
while the database writes this one): ``prepare_versions`` needs no database (normalised
content, content hash, index rows; for PostgreSQL the COPY data already formatted) and
``write_prepared`` runs in the transaction (which versions are new is known only there, so
every version newer than the one before it in the batch is prepared, and only those newer
than the stored one are written). ``gateway.bus.projector.apply_batch`` does the two in a
row.
"""

from __future__ import annotations

import contextlib
import gc
import struct
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, bindparam, delete, select, update
from sqlalchemy.dialects import postgresql

from gateway.store import schema as s
from gateway.store.base import Resource
from gateway.store.cohort import COHORT_TYPES
from gateway.store.content import content_hash, dumps, normalise_instant
from gateway.store.search.index import Values, index_values

try:  # psycopg's own row formatters (C): the bytes ``Copy.write_row`` sends
    from psycopg import postgres, pq
    from psycopg._copy_base import format_row_binary, format_row_text
    from psycopg.adapt import Transformer
except ImportError:  # pragma: no cover - another psycopg layout: rows are sent one by one
    format_row_binary = format_row_text = None

if TYPE_CHECKING:
    from gateway.store.tx import SqlTransaction

Key = tuple[str, str]
Row = tuple[Any, ...]
CHUNK = 500  # ids per IN list
PAUSE_EVERY = 8  # keys prepared between two ``pause`` calls (~0.5 ms of work)

_r = s.resource.c
_CURRENT = select(_r.res_type, _r.res_id, _r.version_id).where(
    _r.res_type == bindparam("k_type"), _r.res_id.in_(bindparam("k_ids", expanding=True)))
_UPDATE_CURRENT = update(s.resource).where(
    _r.res_type == bindparam("k_type"), _r.res_id == bindparam("k_id")).values(
    version_id=bindparam("version_id"), last_updated=bindparam("last_updated"),
    deleted=bindparam("deleted"), content=bindparam("content"),
    content_hash=bindparam("content_hash"))
_CURRENT_KEYS = ("k_type", "k_id", "version_id", "last_updated", "deleted", "content",
                 "content_hash")
_DELETE_INDEX = {kind: delete(table).where(
    table.c.res_type == bindparam("k_type"), table.c.res_id.in_(bindparam("k_ids",
                                                                           expanding=True)))
    for kind, table in s.INDEX_TABLES.items()}
_PG_CURRENT = ("SELECT res_type, res_id, version_id FROM resource WHERE res_type = %s"
               " AND res_id = ANY(%s) ORDER BY res_id FOR UPDATE")
_PG_DELETE_INDEX = {kind: f"DELETE FROM {table.name} WHERE res_type = %s"  # noqa: S608
                    " AND res_id = ANY(%s)" for kind, table in s.INDEX_TABLES.items()}


_PG_TYPES = {"VARCHAR": "text", "TEXT": "text", "INTEGER": "int4", "BIGINT": "int8",
             "FLOAT": "float8", "BOOLEAN": "bool", "BYTEA": "bytea"}
# binary COPY framing (PostgreSQL's COPY file format): header with no flags, and trailer
_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_BINARY_TRAILER = struct.pack("!h", -1)


def _statements(table: Table, binary: bool) -> tuple[str, str, list[str] | None]:
    """(SQLite INSERT, PostgreSQL COPY, the binary COPY's column types) of every column in
    table order; the names come from the schema, never from input."""
    names = ", ".join(f'"{c.name}"' for c in table.columns)
    marks = ", ".join("?" * len(table.columns))
    insert = f"INSERT INTO {table.name} ({names}) VALUES ({marks})"  # noqa: S608
    if not binary:
        return insert, f"COPY {table.name} ({names}) FROM STDIN", None
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    types = [_PG_TYPES[c.type.compile(dialect=dialect).split("(")[0].split()[0]]
             for c in table.columns]
    return insert, f"COPY {table.name} ({names}) FROM STDIN (FORMAT BINARY)", types


# Binary for the resource rows (their values' types are fixed here; no hex text for the
# content); text for index rows, whose values come from resource elements as they are.
_ROW_WRITES = {table.name: _statements(table, binary=table in (s.resource, s.resource_version))
               for table in (s.resource, s.resource_version, *s.INDEX_TABLES.values())}


class CopyRows:
    """COPY data formatted before the transaction, without a connection: psycopg's row
    formatters with its default adapters (the connection adds none for these types), so
    the bytes are those ``write_rows`` sends, made where no database waits for them."""

    def __init__(self) -> None:
        assert format_row_text is not None
        self.text = Transformer()
        self.binary: dict[str, Any] = {}  # table → its Transformer
        for name, (_insert, _copy, types) in _ROW_WRITES.items():
            if types is not None:
                transformer = Transformer()
                transformer.set_dumper_types([postgres.types[t].oid for t in types],
                                             pq.Format.BINARY)
                self.binary[name] = transformer

    def binary_row(self, table: Table, row: Row) -> bytes:
        out = bytearray()
        format_row_binary(row, self.binary[table.name], out)
        return bytes(out)

    def key_prefix(self, rtype: str, rid: str) -> bytes:
        """The text COPY start of every index row of one resource: type and id, a tab."""
        out = bytearray()
        format_row_text((rtype, rid), self.text, out)
        return bytes(out[:-1]) + b"\t"  # without the row's newline

    def index_rows(self, prefix: bytes, kind: str, rows: list[Values]) -> bytes:
        """Text COPY lines of one resource's rows of one index table (``prefix``: its
        ``key_prefix``), each row's values looked up in ``_LINE_ENDS`` (codes, systems,
        references repeat from resource to resource) or formatted and kept there."""
        ends, free = _LINE_ENDS[kind], _FREE[kind]
        lines = []
        for row in rows:
            end = ends.get(row)
            if end is None:
                out = bytearray()
                format_row_text(row, self.text, out)
                end = bytes(out)
                if all(row[i] is None or row[i].__class__ is str for i in free):
                    if len(ends) >= LINE_CACHE:
                        ends.clear()
                    ends[row] = end
            lines.append(prefix + end)
        return b"".join(lines)


LINE_CACHE = 4096  # formatted line ends per index table; emptied when full
_LINE_ENDS: dict[str, dict[Values, bytes]] = {kind: {} for kind in s.INDEX_TABLES}
# Per index table, the row positions that may hold a value other than str, None or int ms:
# a row is kept only with str or None there, since equal keys may differ in COPY text
# (1, 1.0 and True; 0.0 and -0.0). Rows with a quantity or number value are never kept.
_FREE = {"token": (1, 2), "string": (), "date": (), "reference": (1,),
         "quantity": (1, 2, 3, 4), "uri": (), "number": (1,), "composite": (1, 2, 3, 4, 5)}


class Chain:
    """One key's versions in a batch, each newer than the one before it (log order), built
    before the transaction. A version whose rows could not be built holds the exception,
    raised only when that version turns out to be new: an old version stays a no-op,
    whatever it holds (as with ``apply_version``)."""

    __slots__ = ("versions", "resources", "history", "current", "current_copy", "index")

    def __init__(self) -> None:
        self.versions: list[int] = []
        self.resources: list[Resource] = []
        self.history: list[Any] = []  # resource_version rows (tuples, or COPY bytes)
        self.current: Row | Exception | None = None  # the resource row of the last one
        self.current_copy: bytes | None = None  # … as COPY bytes
        self.index: dict[str, Any] | Exception = {}  # its index rows per kind (… or bytes)


class Prepared:
    """A run of versions ready for ``write_prepared``; ``copy``: rows as COPY bytes."""

    __slots__ = ("chains", "copy")

    def __init__(self, chains: dict[Key, Chain], copy: bool) -> None:
        self.chains, self.copy = chains, copy


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while a batch is decoded and prepared: its tens of
    thousands of new containers (all acyclic, freed by reference counting) would trigger
    collections that scan the whole heap, ~20% of the preparing. It resumes right after
    (another thread pausing it meanwhile only makes that thread's work slower)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def copy_available() -> bool:
    """Whether this psycopg has the row formatters ``CopyRows`` uses."""
    return format_row_text is not None


def copy_ready(tx: SqlTransaction) -> bool:
    """Whether COPY data made without a connection suits this one (UTF-8 text)."""
    if not copy_available():
        return False
    driver = tx.conn.connection.driver_connection
    return str(driver.info.encoding).lower().replace("-", "") == "utf8"  # type: ignore[union-attr]


def prepare_versions(resources: Sequence[Resource], *, copy: bool = False,
                     pause: Callable[[], object] | None = None) -> Prepared:
    """Every row a version would write, for each version newer than the one before it of the
    same key (no database); ``copy``: as PostgreSQL COPY data; ``pause`` called every
    ``PAUSE_EVERY`` keys (to let a thread waiting for the interpreter run)."""
    chains: dict[Key, Chain] = {}
    for resource in resources:
        key = (resource["resourceType"], resource["id"])
        version = int(resource["meta"]["versionId"])
        chain = chains.get(key)
        if chain is None:
            chains[key] = chain = Chain()
        if version > (chain.versions[-1] if chain.versions else 0):
            chain.versions.append(version)
            chain.resources.append(resource)
    encoder = CopyRows() if copy else None
    for n, ((rtype, rid), chain) in enumerate(chains.items(), 1):
        _build(chain, rtype, rid, encoder)
        if pause is not None and n % PAUSE_EVERY == 0:
            pause()
    return Prepared(chains, copy)


def _build(chain: Chain, rtype: str, rid: str, encoder: CopyRows | None) -> None:
    stored: Resource | None = None
    row: Row | None = None
    for version, resource in zip(chain.versions, chain.resources, strict=True):
        try:
            stored = _normalised(resource)
            row = (rtype, rid, version, stored["meta"]["lastUpdated"], False, dumps(stored))
            chain.history.append(encoder.binary_row(s.resource_version, row) if encoder
                                 else row)
        except Exception as exc:  # noqa: BLE001 - raised if this version is new
            chain.history.append(exc)
            stored = row = None
    chain.resources = []
    if not chain.history:
        return
    last = chain.history[-1]
    if stored is None or row is None:
        chain.current = chain.index = last
        return
    try:
        chain.current = (*row, content_hash(stored))
        if encoder is not None:
            chain.current_copy = encoder.binary_row(s.resource, chain.current)
    except Exception as exc:  # noqa: BLE001
        chain.current = exc
    try:
        chain.index = _index(stored, rtype, rid, encoder)
    except Exception as exc:  # noqa: BLE001
        chain.index = exc


def _index(resource: Resource, rtype: str, rid: str,
           encoder: CopyRows | None) -> dict[str, Any]:
    if encoder is not None:
        prefix = encoder.key_prefix(rtype, rid)
        return {kind: encoder.index_rows(prefix, kind, rows)
                for kind, rows in index_values(resource).items()}
    return {kind: [(rtype, rid, *row) for row in rows]
            for kind, rows in index_values(resource).items()}


def _normalised(resource: Resource) -> Resource:
    meta = resource["meta"]
    return {**resource, "meta": {**meta, "lastUpdated": normalise_instant(meta["lastUpdated"])}}


def _built(value: Any) -> Any:
    if isinstance(value, Exception):
        raise value
    return value


def write_prepared(tx: SqlTransaction, prepared: Prepared) -> int:
    """Write the prepared versions newer than what the store holds; returns how many."""
    chains = prepared.chains
    held = _current_versions(tx, set(chains))
    history: list[Any] = []
    fresh: list[Any] = []
    changed: list[dict[str, Any]] = []
    existing: list[Key] = []
    index: dict[str, list[Any]] = {kind: [] for kind in s.INDEX_TABLES}
    for key, chain in chains.items():
        versions, stored = chain.versions, held.get(key, 0)
        if not versions or versions[-1] <= stored:
            continue
        new = chain.history[bisect_right(versions, stored):]
        if key[0] in COHORT_TYPES:
            tx.cohort_keys.add(key)
        history.extend(_built(row) for row in new)
        current = _built(chain.current)
        if key in held:
            changed.append(dict(zip(_CURRENT_KEYS, current, strict=True)))
            existing.append(key)
        else:
            fresh.append(chain.current_copy if prepared.copy else current)
        for kind, rows in _built(chain.index).items():
            index[kind].append(rows)
    if not history:
        return 0
    _write(tx, prepared.copy, s.resource_version, history)
    _write(tx, prepared.copy, s.resource, fresh)
    if changed:
        tx.conn.execute(_UPDATE_CURRENT, changed)
    _replace_index(tx, existing, index, prepared.copy)
    return len(history)


def _write(tx: SqlTransaction, copy: bool, table: Table, rows: list[Any]) -> None:
    if copy:
        write_copy(tx, table, b"".join(rows))
    else:
        write_rows(tx, table, rows)


def _by_type(keys: set[Key] | list[Key]) -> dict[str, list[str]]:
    """Ids per resource type, sorted: one lock order for every projector (no deadlock)."""
    out: dict[str, list[str]] = {}
    for rtype, rid in sorted(keys):
        out.setdefault(rtype, []).append(rid)
    return out


def _current_versions(tx: SqlTransaction, keys: set[Key]) -> dict[Key, int]:
    found: dict[Key, int] = {}
    for rtype, ids in _by_type(keys).items():
        if tx.store.dialect == "postgresql":
            found.update(_pg_rows(tx, _PG_CURRENT, rtype, ids))
            continue
        for start in range(0, len(ids), CHUNK):
            rows = tx.conn.execute(_CURRENT, {"k_type": rtype, "k_ids": ids[start:start + CHUNK]})
            found.update({(t, i): v for t, i, v in rows})
    return found


def _pg_rows(tx: SqlTransaction, statement: str, rtype: str,
             ids: list[str]) -> dict[Key, int]:
    """A key statement with the ids as one array (``= ANY(%s)``), planned for these values
    (not prepared: a generic plan of a key list is a scan that grows with the table)."""
    cursor = tx.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    cursor.execute(statement, (rtype, ids), prepare=False)
    return {(t, i): v for t, i, v in cursor.fetchall()} if cursor.description else {}


def _replace_index(tx: SqlTransaction, existing: list[Key], index: dict[str, list[Any]],
                   copy: bool) -> None:
    """Index rows of the keys that had a current row deleted, the new ones written;
    ``index``: per kind, each resource's rows (a list of tuples, or COPY bytes)."""
    by_type = _by_type(existing)
    for kind, table in s.INDEX_TABLES.items():
        for rtype, ids in by_type.items():
            if tx.store.dialect == "postgresql":
                _pg_rows(tx, _PG_DELETE_INDEX[kind], rtype, ids)
                continue
            for start in range(0, len(ids), CHUNK):
                tx.conn.execute(_DELETE_INDEX[kind],
                                {"k_type": rtype, "k_ids": ids[start:start + CHUNK]})
        if copy:
            write_copy(tx, table, b"".join(index[kind]))
        else:
            write_rows(tx, table, [row for rows in index[kind] for row in rows])


def write_rows(tx: SqlTransaction, table: Table, rows: list[tuple[Any, ...]]) -> None:
    """Rows holding every column of ``table`` in table order: COPY on PostgreSQL, one
    executemany on SQLite."""
    if not rows:
        return
    insert, copy_in, types = _ROW_WRITES[table.name]
    if tx.store.dialect != "postgresql":
        tx.conn.exec_driver_sql(insert, rows)
        return
    cursor = tx.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(copy_in) as copy:
        if types is not None:
            copy.set_types(types)
        for row in rows:
            copy.write_row(row)


def write_copy(tx: SqlTransaction, table: Table, data: bytes) -> None:
    """Rows of ``table`` already formatted by ``CopyRows`` (binary ones without framing):
    one COPY on PostgreSQL."""
    if not data:
        return
    _insert, copy_in, types = _ROW_WRITES[table.name]
    if types is not None:
        data = _BINARY_HEADER + data + _BINARY_TRAILER
    cursor = tx.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(copy_in) as copy:
        copy.write(data)
