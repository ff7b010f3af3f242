"""The hot read path: a resource's stored JSON bytes by primary key, as they are.

``SqlStore.read`` goes through SQLAlchemy Core and parses the JSON (≈160 µs on SQLite); the
FHIR API only needs the stored bytes (they already carry ``meta.versionId``/``lastUpdated``)
plus version and instant for the ETag and Last-Modified headers. ``SqlStore.raw_reader()``
gives a ``RawReader`` that reads the ``resource`` table directly:

* SQLite: one statement on a DB-API connection that each thread keeps in autocommit
  mode, inline on the event loop (≈13 µs: less than a hop to a worker thread).
* PostgreSQL: the reads of one event loop share one nonblocking libpq connection
  (``PgBatches``, psycopg's ``pq`` layer without its cursor machinery). The reads that
  arrive while a statement is out are sent together as the next statement (one prepared
  statement joining the requested keys on the primary key, binary results), so the event
  loop is never held during a round trip and the database parses, plans and answers one
  statement per batch instead of one per read. Under 16 concurrent clients on 2 cores
  (bench/api.py, 100k Observations) batches average ~8 reads, the database's CPU per
  read fell from ≈40 to ≈17 µs and reads went from ~3.0-3.4k to ~4.2-5.9k req/s
  (52-63 % → 84-123 % of the bare endpoint in the same runs; one connection per thread
  with a blocking round trip per read before). A lone read still costs one round trip
  (≈25 µs) plus one event-loop iteration.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

from sqlalchemy import Engine, bindparam, select

from gateway.errors import Gone, StoreError
from gateway.store import schema
from gateway.store.base import RawResource

_c = schema.resource.c
_READ = select(_c.deleted, _c.content, _c.version_id, _c.last_updated).where(
    _c.res_type == bindparam("res_type"), _c.res_id == bindparam("res_id"))

Row = tuple[Any, ...]  # deleted, content, version_id, last_updated
Key = tuple[str, str]  # resource type, id
Waiting = list["asyncio.Future[Row | None]"]  # the reads of one key


class RawReader:
    """Reads current versions as bytes: None for an unknown resource, ``Gone`` for a
    deleted one. Reads on PostgreSQL never hold the event loop (see the module docstring);
    reads on SQLite run inline. Its connections are its own (outside the engine's pool):
    ``close`` closes them (the store closes the readers it gave out)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        compiled = _READ.compile(dialect=engine.dialect)
        self.sql = str(compiled)  # in the driver's own paramstyle
        self.positions = compiled.positiontup if compiled.positional else None
        self.db_error: type[Exception] = engine.dialect.loaded_dbapi.Error
        self.batched = self.dialect == "postgresql"
        self.batches: dict[asyncio.AbstractEventLoop, PgBatches] = {}
        self.local = threading.local()
        self.lock = threading.Lock()
        self.opened: list[Any] = []

    async def read_async(self, resource_type: str, id: str) -> RawResource | None:
        """On PostgreSQL through this event loop's ``PgBatches``; otherwise inline."""
        if not self.batched:
            return self.read(resource_type, id)
        row = await self._batches().read(resource_type, id)
        return _raw(resource_type, id, row)

    def read(self, resource_type: str, id: str) -> RawResource | None:
        return _raw(resource_type, id, self._row(resource_type, id))

    def _batches(self) -> PgBatches:
        """This event loop's connection, opened on its first read (and after a loss)."""
        loop = asyncio.get_running_loop()
        batches = self.batches.get(loop)
        if batches is None or batches.closed:
            self._forget_closed_loops()
            try:  # blocks this loop once, for the connect and the prepare
                batches = PgBatches(self._detached_connection(), loop)
            except Exception as exc:
                raise StoreError(f"database error: {type(exc).__name__}") from exc
            self.batches[loop] = batches
        return batches

    def _forget_closed_loops(self) -> None:
        for loop in [lp for lp, b in self.batches.items() if lp.is_closed() or b.closed]:
            self.batches.pop(loop).close()

    def _row(self, resource_type: str, id: str) -> Row | None:
        conn = self._connection()
        try:
            cursor = conn.cursor()
            cursor.execute(self.sql, self._params(resource_type, id))
            row: Row | None = cursor.fetchone()
            cursor.close()
            return row
        except self.db_error as exc:
            self._discard()  # a broken connection is replaced on the next read
            raise StoreError(f"database error: {type(exc).__name__}",
                             resource=f"{resource_type}/{id}") from exc

    def _connection(self) -> Any:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self._detached_connection()
            self.local.conn = conn
            with self.lock:
                self.opened.append(conn)
        return conn

    def _detached_connection(self) -> Any:
        """A driver connection of the store's engine, outside its pool, in autocommit
        mode (a single round trip per read: no pool checkout, ping or rollback)."""
        proxied = self.engine.raw_connection()
        conn: Any = proxied.driver_connection
        proxied.detach()  # ours from now on
        if self.batched:
            conn.autocommit = True  # SQLite connections already are (the store's pragma)
        return conn

    def _discard(self) -> None:
        conn = getattr(self.local, "conn", None)
        self.local.conn = None
        if conn is not None:
            with self.lock:
                self.opened.remove(conn)
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        with self.lock:
            opened, self.opened = self.opened, []
        for conn in opened:
            with contextlib.suppress(Exception):
                conn.close()
        batches, self.batches = self.batches, {}
        for each in batches.values():
            each.close_from_any_thread()

    def _params(self, resource_type: str, id: str) -> Any:
        values = {"res_type": resource_type, "res_id": id}
        if self.positions is None:
            return values
        return tuple(values[name] for name in self.positions)


def _raw(resource_type: str, id: str, row: Row | None) -> RawResource | None:
    if row is None:
        return None
    deleted, content, version_id, last_updated = row
    if deleted:
        raise Gone("resource deleted", resource=f"{resource_type}/{id}", version=version_id)
    return RawResource(bytes(content), str(version_id), str(last_updated))


# -- PostgreSQL: batched reads on a nonblocking connection ------------------------------

_STMT = b"gateway_fastread"
# k.n: the position of the key in the batch (rows come back in any order). The nested
# loop over the keys probes the primary key once per key whatever the batch size (the
# session uses the generic plan: no planning per batch).
_PG_READ = (  # names from the schema, values bound
    f"SELECT k.n, r.{_c.deleted.name}, r.{_c.content.name}, "  # noqa: S608
    f"r.{_c.version_id.name}::text, r.{_c.last_updated.name} "
    "FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS k(t, i, n) "
    f"JOIN {schema.resource.name} r "
    f"ON r.{_c.res_type.name} = k.t AND r.{_c.res_id.name} = k.i").encode()
_SETUP = (b"SET client_encoding TO 'UTF8'", b"SET plan_cache_mode TO force_generic_plan")


class PgBatches:
    """One nonblocking psycopg connection serving the reads of one event loop.

    At most one statement is out at a time. Reads queue while it is; the queue is sent
    as the next statement as soon as its answer is in, or — when nothing is out — once
    the reads that started in the same loop iteration have joined. Only the loop's own
    thread touches an instance (except ``close_from_any_thread``)."""

    def __init__(self, conn: Any, loop: asyncio.AbstractEventLoop) -> None:
        from psycopg import pq

        self.conn = conn
        self.pgconn = conn.pgconn
        self.loop = loop
        self.closed = False
        self.queued: dict[Key, Waiting] = {}
        self.sent: list[tuple[Key, Waiting]] | None = None
        self.answer: Any = None
        self.scheduled = False
        self.statements = 0  # sent so far (tests, diagnostics)
        try:
            for setting in _SETUP:
                self._check(self.pgconn.exec_(setting), pq.ExecStatus.COMMAND_OK)
            self._check(self.pgconn.prepare(_STMT, _PG_READ), pq.ExecStatus.COMMAND_OK)
            self.pgconn.nonblocking = 1
        except BaseException:
            self.close()
            raise
        self.fd = self.pgconn.socket
        loop.add_reader(self.fd, self._readable)  # answers, and a lost connection

    def read(self, resource_type: str, id: str) -> asyncio.Future[Row | None]:
        """The row of one key, once its batch is answered (None: no such row)."""
        if self.closed:  # (RawReader replaces a closed one before reading)
            raise StoreError("database error: connection closed",
                             resource=f"{resource_type}/{id}")
        future: asyncio.Future[Row | None] = self.loop.create_future()
        if "\x00" in resource_type or "\x00" in id:
            future.set_result(None)  # not storable in PostgreSQL text, so not stored
            return future
        waiting = self.queued.get((resource_type, id))
        if waiting is None:
            self.queued[resource_type, id] = [future]
        else:
            waiting.append(future)
        if self.sent is None and not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self._send)
        return future

    def _send(self) -> None:
        self.scheduled = False
        if self.sent is not None or not self.queued or self.closed:
            return
        queued, self.queued = self.queued, {}
        types = _array(key[0] for key in queued)
        ids = _array(key[1] for key in queued)
        self.sent = list(queued.items())
        self.statements += 1
        try:
            self.pgconn.send_query_prepared(_STMT, [types, ids], result_format=1)
            if self.pgconn.flush():
                self.loop.add_writer(self.fd, self._writable)
        except Exception as exc:  # noqa: BLE001 - every failure fails the waiting reads
            self._broken(exc)

    def _writable(self) -> None:
        """The rest of a statement that did not fit the socket buffer at once."""
        try:
            if not self.pgconn.flush():
                self.loop.remove_writer(self.fd)
        except Exception as exc:  # noqa: BLE001
            self._broken(exc)

    def _readable(self) -> None:
        from psycopg import pq

        try:
            self.pgconn.consume_input()
            while not self.pgconn.is_busy():
                result = self.pgconn.get_result()
                if result is None:
                    break
                self.answer = result
            else:
                return  # more of the answer to come
            answer, self.answer = self.answer, None
            if self.pgconn.status == pq.ConnStatus.BAD:
                raise _lost()
        except Exception as exc:  # noqa: BLE001
            self._broken(exc)
            return
        if self.sent is not None and answer is not None:
            self._deliver(answer)

    def _deliver(self, answer: Any) -> None:
        """Each read of the batch gets its row (or the statement's error); then the reads
        queued meanwhile go out."""
        sent, self.sent = self.sent or [], None
        try:
            rows = _rows(answer, len(sent))
        except Exception as exc:  # noqa: BLE001 - no read is left waiting
            _fail(sent, exc)
        else:
            for (_, futures), row in zip(sent, rows, strict=True):
                for future in futures:
                    if not future.done():  # a cancelled read
                        future.set_result(row)
        if self.queued:
            self._send()

    def _broken(self, exc: BaseException) -> None:
        """The connection is unusable: its reads fail, the next read opens another."""
        sent, self.sent = self.sent or [], None
        queued, self.queued = list(self.queued.items()), {}
        _fail(sent + queued, exc)
        self.close()

    def _check(self, result: Any, expected: Any) -> None:
        if result.status != expected:
            raise _statement_error(result)

    def close(self) -> None:
        """On the loop's thread (or once the loop is closed)."""
        if self.closed:
            return
        self.closed = True
        if hasattr(self, "fd") and not self.loop.is_closed():
            self.loop.remove_reader(self.fd)
            self.loop.remove_writer(self.fd)
        with contextlib.suppress(Exception):
            self.conn.close()

    def close_from_any_thread(self) -> None:
        if self.loop.is_closed() or not self.loop.is_running():
            self.close()
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self.loop.call_soon_threadsafe(self.close)


def _rows(answer: Any, keys: int) -> list[Row | None]:
    """The binary answer in the order of the keys (k.n counts from 1)."""
    from psycopg import pq

    if answer.status != pq.ExecStatus.TUPLES_OK:
        raise _statement_error(answer)
    rows: list[Row | None] = [None] * keys
    value = answer.get_value
    for k in range(answer.ntuples):
        rows[int.from_bytes(value(k, 0), "big") - 1] = (
            value(k, 1) == b"\x01", value(k, 2), value(k, 3).decode(), value(k, 4).decode())
    return rows


def _array(values: Any) -> bytes:
    """A PostgreSQL text[] literal (every element quoted; NUL never gets here)."""
    quoted = ('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
    return ("{" + ",".join(quoted) + "}").encode()


def _fail(waiting: list[tuple[Key, Waiting]], exc: BaseException) -> None:
    """Each waiting read gets its own StoreError (as the one-statement reads did)."""
    for (resource_type, id), futures in waiting:
        for future in futures:
            if not future.done():
                error = StoreError(f"database error: {type(exc).__name__}",
                                   resource=f"{resource_type}/{id}")
                error.__cause__ = exc
                future.set_exception(error)


def _lost() -> Exception:
    import psycopg

    return psycopg.OperationalError("the connection to the database is lost")


def _statement_error(result: Any) -> Exception:
    import psycopg

    return psycopg.errors.error_from_result(result, encoding="utf-8")
