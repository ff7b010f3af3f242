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
than the stored one are written). The store offers them as ``SqlStore.prepare_versions``
and ``SqlTransaction.apply_versions``.
"""

from __future__ import annotations

import re
import struct
from bisect import bisect_right
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, bindparam, delete, select, update

from gateway.store import schema as s
from gateway.store.base import Resource
from gateway.store.content import content_hash, dumps, normalise_instant
from gateway.store.rows import write_copy, write_rows
from gateway.store.search.index import Values, index_values
from gateway.store.session import Session

try:  # the driver's text dumpers, for the values not written here (floats)
    from psycopg.adapt import PyFormat, Transformer
except ImportError:  # pragma: no cover - no psycopg: no PostgreSQL, no COPY data
    Transformer = None  # type: ignore[assignment]

Key = tuple[str, str]
Row = tuple[Any, ...]
CHUNK = 500  # ids per IN list

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

# COPY data framing (PostgreSQL, "COPY": file formats): a binary row is its field count
# (int16) then each field as length (int32, -1: NULL) and bytes; a text row is its fields
# separated by tabs, NULL as \N, with backslash escapes for these bytes
_NULL_FIELD = struct.pack("!i", -1)
_pack_length = struct.Struct("!i").pack
_FIELD_COUNT = [struct.pack("!h", n) for n in range(16)]
# binary values of the resource tables' columns: text (UTF-8), int4, bool, bytea
_BINARY: dict[type, Any] = {str: str.encode, int: struct.Struct("!i").pack,
                            bool: lambda v: b"\x01" if v else b"\x00", bytes: bytes}


def _no_binary(value: Any) -> bytes:
    raise TypeError(f"no binary COPY form for {type(value).__name__}")


# text COPY escapes (PostgreSQL "COPY", text format): backslash and the control characters
_TEXT_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\v": "\\v", "\f": "\\f",
                 "\r": "\\r", "\\": "\\\\"}
_TEXT_SPECIAL = re.compile("[\b\t\n\v\f\r\\\\]")


def _escaped(text: str) -> str:
    if _TEXT_SPECIAL.search(text) is None:
        return text
    return _TEXT_SPECIAL.sub(lambda m: _TEXT_ESCAPES[m.group(0)], text)


class CopyRows:
    """COPY data formatted before the transaction, without a connection: each value dumped
    by psycopg's default adapters (the connection adds none for these types), framed as
    PostgreSQL's COPY format says, so the bytes are those ``write_rows`` sends, made where
    no database waits for them."""

    def __init__(self) -> None:
        assert Transformer is not None
        self.text = Transformer()

    def binary_row(self, row: Row) -> bytes:
        """One binary COPY row of a resource table (no NULLs but the content of a delete)."""
        out = [_FIELD_COUNT[len(row)]]
        for value in row:
            if value is None:
                out.append(_NULL_FIELD)
                continue
            data = _BINARY.get(value.__class__, _no_binary)(value)
            out.append(_pack_length(len(data)))
            out.append(data)
        return b"".join(out)

    def text_row(self, row: Row) -> bytes:
        """One text COPY line (with its newline): str, int, bool and None written here as
        psycopg's text dumpers write them; other values (floats), and a str with NUL (which
        the dumper refuses), by those dumpers."""
        fields = []
        for value in row:
            kind = value.__class__
            if kind is str and "\x00" not in value:
                fields.append(_escaped(value))
            elif value is None:
                fields.append("\\N")
            elif kind is bool:
                fields.append("t" if value else "f")
            elif kind is int:
                fields.append(str(value))
            else:
                dumped = self.text.dump_sequence((value,), _ONE_TEXT)[0]
                fields.append("\\N" if dumped is None
                              else _escaped(bytes(dumped).decode()))
        return ("\t".join(fields) + "\n").encode()

    def key_prefix(self, rtype: str, rid: str) -> bytes:
        """The text COPY start of every index row of one resource: type and id, a tab."""
        return self.text_row((rtype, rid))[:-1] + b"\t"  # without the row's newline

    def index_rows(self, prefix: bytes, kind: str, rows: list[Values]) -> bytes:
        """Text COPY lines of one resource's rows of one index table (``prefix``: its
        ``key_prefix``), each row's values looked up in ``_LINE_ENDS`` (codes, systems,
        references repeat from resource to resource) or formatted and kept there."""
        ends, free = _LINE_ENDS[kind], _FREE[kind]
        lines = []
        for row in rows:
            end = ends.get(row)
            if end is None:
                end = self.text_row(row)
                if all(row[i] is None or row[i].__class__ is str for i in free):
                    if len(ends) >= LINE_CACHE:
                        ends.clear()
                    ends[row] = end
            lines.append(prefix + end)
        return b"".join(lines)


_ONE_TEXT = [PyFormat.TEXT] if Transformer else []
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

    __slots__ = ("chains", "copy", "resources")

    def __init__(self, chains: dict[Key, Chain], copy: bool,
                 resources: Sequence[Resource]) -> None:
        self.chains, self.copy = chains, copy
        self.resources = resources  # prepared again without COPY data if a connection
        # turns out not to take it (``copy_ready``)


def copy_available() -> bool:
    """Whether psycopg is there to format COPY data (``CopyRows``)."""
    return Transformer is not None


def copy_ready(session: Session) -> bool:
    """Whether COPY data made without a connection suits this one (PostgreSQL, UTF-8)."""
    if not session.postgresql or not copy_available():
        return False
    driver = session.conn.connection.driver_connection
    return str(driver.info.encoding).lower().replace("-", "") == "utf8"  # type: ignore[union-attr]


def prepare_versions(resources: Sequence[Resource], *, copy: bool = False) -> Prepared:
    """Every row a version would write, for each version newer than the one before it of the
    same key (no database); ``copy``: as PostgreSQL COPY data."""
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
    for (rtype, rid), chain in chains.items():
        _build(chain, rtype, rid, encoder)
    return Prepared(chains, copy, resources)


def _build(chain: Chain, rtype: str, rid: str, encoder: CopyRows | None) -> None:
    stored: Resource | None = None
    row: Row | None = None
    for version, resource in zip(chain.versions, chain.resources, strict=True):
        try:
            stored = _normalised(resource)
            row = (rtype, rid, version, stored["meta"]["lastUpdated"], False, dumps(stored))
            chain.history.append(encoder.binary_row(row) if encoder
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
            chain.current_copy = encoder.binary_row(chain.current)
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


def write_prepared(session: Session, prepared: Prepared) -> int:
    """Write the prepared versions newer than what the store holds; returns how many."""
    chains = prepared.chains
    held = _current_versions(session, set(chains))
    history: list[Any] = []
    fresh: list[Any] = []
    changed: list[dict[str, Any]] = []
    existing: list[Key] = []
    written: list[Key] = []
    index: dict[str, list[Any]] = {kind: [] for kind in s.INDEX_TABLES}
    for key, chain in chains.items():
        versions, stored = chain.versions, held.get(key, 0)
        if not versions or versions[-1] <= stored:
            continue
        new = chain.history[bisect_right(versions, stored):]
        written.append(key)
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
    session.touched(written)
    _write(session, prepared.copy, s.resource_version, history)
    _write(session, prepared.copy, s.resource, fresh)
    if changed:
        session.conn.execute(_UPDATE_CURRENT, changed)
    _replace_index(session, existing, index, prepared.copy)
    return len(history)


def _write(session: Session, copy: bool, table: Table, rows: list[Any]) -> None:
    if copy:
        write_copy(session, table, b"".join(rows))
    else:
        write_rows(session, table, rows)


def _by_type(keys: set[Key] | list[Key]) -> dict[str, list[str]]:
    """Ids per resource type, sorted: one lock order for every projector (no deadlock)."""
    out: dict[str, list[str]] = {}
    for rtype, rid in sorted(keys):
        out.setdefault(rtype, []).append(rid)
    return out


def _current_versions(session: Session, keys: set[Key]) -> dict[Key, int]:
    found: dict[Key, int] = {}
    for rtype, ids in _by_type(keys).items():
        if session.postgresql:
            found.update(_pg_rows(session, _PG_CURRENT, rtype, ids))
            continue
        for start in range(0, len(ids), CHUNK):
            rows = session.conn.execute(_CURRENT, {"k_type": rtype,
                                                   "k_ids": ids[start:start + CHUNK]})
            found.update({(t, i): v for t, i, v in rows})
    return found


def _pg_rows(session: Session, statement: str, rtype: str,
             ids: list[str]) -> dict[Key, int]:
    """A key statement with the ids as one array (``= ANY(%s)``), planned for these values
    (not prepared: a generic plan of a key list is a scan that grows with the table)."""
    cursor = session.driver_cursor()
    cursor.execute(statement, (rtype, ids), prepare=False)
    return {(t, i): v for t, i, v in cursor.fetchall()} if cursor.description else {}


def _replace_index(session: Session, existing: list[Key], index: dict[str, list[Any]],
                   copy: bool) -> None:
    """Index rows of the keys that had a current row deleted, the new ones written;
    ``index``: per kind, each resource's rows (a list of tuples, or COPY bytes)."""
    by_type = _by_type(existing)
    for kind, table in s.INDEX_TABLES.items():
        for rtype, ids in by_type.items():
            if session.postgresql:
                _pg_rows(session, _PG_DELETE_INDEX[kind], rtype, ids)
                continue
            for start in range(0, len(ids), CHUNK):
                session.conn.execute(_DELETE_INDEX[kind],
                                     {"k_type": rtype, "k_ids": ids[start:start + CHUNK]})
        if copy:
            write_copy(session, table, b"".join(index[kind]))
        else:
            write_rows(session, table, [row for rows in index[kind] for row in rows])
