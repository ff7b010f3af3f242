"""The store: FHIR resources, their history and search index, the inbox, the outbox and
the pseudonym links, on SQLite or PostgreSQL. The only package that speaks SQL.

Its public API is this module: the ``Store`` and ``Transaction`` protocols with their
values (``gateway.store.base``), the implementation ``SqlStore``, and the few helpers the
API and the exports share. Everything else in the package is internal (its layers are
drawn in docs/store.md and checked by the import contracts in ``.importlinter``).
"""

from gateway.store import console as console_queries  # the web console's pages
from gateway.store.base import (
    Change,
    InboxEntry,
    InboxFilter,
    InboxRecord,
    OutboxRow,
    PreparedVersions,
    RawReads,
    RawResource,
    Resource,
    SearchResult,
    Store,
    Transaction,
    Version,
)
from gateway.store.budget import Budget
from gateway.store.cohort import SOURCE as COHORT_SOURCE
from gateway.store.content import format_instant, normalise_instant, now_instant
from gateway.store.exports import COMPARTMENT, Scope, compartment_page, recorded_restriction
from gateway.store.search.params import NETWORK_BASE, RESOURCE_TYPES, search_parameters
from gateway.store.sql import SqlStore
from gateway.store.views import (
    VIEW_TYPE,
    delete_view,
    list_views,
    read_view,
    save_view,
    view_resources,
)

__all__ = [
    "COHORT_SOURCE", "COMPARTMENT", "NETWORK_BASE", "RESOURCE_TYPES", "Budget", "Change",
    "InboxEntry", "InboxFilter", "InboxRecord", "OutboxRow", "PreparedVersions", "RawReads",
    "RawResource", "Resource", "Scope", "SearchResult", "SqlStore", "Store", "Transaction",
    "Version", "compartment_page", "console_queries", "format_instant", "normalise_instant",
    "now_instant", "recorded_restriction", "search_parameters",
    "VIEW_TYPE", "delete_view", "list_views", "read_view", "save_view", "view_resources",
]
