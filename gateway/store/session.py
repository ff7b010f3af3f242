"""The session: what every SQL helper of the store works on.

A ``Session`` is one connection inside one database transaction, with the two facts the
helpers decide by: the SQL dialect (``sqlite`` | ``postgresql``) and whether the
database is an edge's lean store (no search index, no history: ``gateway.store.profile``).
It also gathers, for the hub's cohort refresh before the commit
(``gateway.store.cohort``), the ResearchStudy and ResearchSubject keys written.

The helper modules (``rows``, ``indexing``, ``writegroup``, ``bulk``, ``projection``,
``outbox``, ``inbox``, ``profile``, ``cohort``) take a ``Session``, never a transaction or
a store object, so that they sit below ``tx`` and ``sql`` and import neither.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection

Key = tuple[str, str]  # (resource type, id)
# the resource types whose writes change a hub's study cohorts
COHORT_TYPES = frozenset({"ResearchStudy", "ResearchSubject"})


class Session:
    """One connection in one transaction, its dialect, and the store's profile."""

    __slots__ = ("conn", "dialect", "edge", "cohort_keys")

    def __init__(self, conn: Connection, dialect: str, *, edge: bool) -> None:
        self.conn = conn
        self.dialect = dialect
        self.edge = edge
        self.cohort_keys: set[Key] = set()  # read (and emptied) by ``cohort.refresh_cohorts``

    @property
    def postgresql(self) -> bool:
        return self.dialect == "postgresql"

    def touched(self, keys: Iterable[Key]) -> None:
        """Note written keys; only a hub keeps cohorts, and only of ``COHORT_TYPES``."""
        if not self.edge:
            self.cohort_keys.update(key for key in keys if key[0] in COHORT_TYPES)

    def driver_cursor(self) -> Any:
        """A cursor of the driver's own connection (psycopg ``COPY``) in this transaction."""
        return self.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
