"""The store's tables (SQLAlchemy Core), identical on SQLite and PostgreSQL.

Instants are kept two ways: ISO 8601 UTC text with millisecond precision (``…T10:02:55.123Z``,
sortable as text) where they are shown, and integer epoch milliseconds in the date search
index, where ranges are compared.

The Alembic revisions under ``migrations/versions`` create exactly these tables; a test
checks that the migrated schema and this metadata agree.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.types import TypeEngine

metadata = MetaData()

TYPE = 64  # resource type names
ID = 64  # FHIR ids: up to 64 characters
INSTANT = 32  # "2026-11-27T10:02:55.123Z"

BigId = BigInteger().with_variant(Integer(), "sqlite")  # SQLite rowid aliasing needs INTEGER


def _c(length: int | None = None) -> TypeEngine[str]:
    """Text compared by code point on both databases (PostgreSQL: COLLATE "C"), so that
    ordering, keyset paging and prefix ranges agree whatever the database's locale."""
    plain: TypeEngine[str] = String(length) if length else Text()
    ordered: TypeEngine[str] = String(length, collation="C") if length else Text(collation="C")
    return plain.with_variant(ordered, "postgresql")



resource = Table(
    "resource", metadata,
    Column("res_type", _c(TYPE), primary_key=True),
    Column("res_id", _c(ID), primary_key=True),
    Column("version_id", Integer, nullable=False),
    Column("last_updated", _c(INSTANT), nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("content", LargeBinary, nullable=True),  # JSON; NULL when deleted
    Column("content_hash", _c(64), nullable=True),
)
Index("ix_resource_type_updated", resource.c.res_type, resource.c.last_updated, resource.c.res_id)
# covering: pages are chosen without reading resource content
Index("ix_resource_live", resource.c.res_type, resource.c.res_id, resource.c.deleted,
      resource.c.last_updated)

resource_version = Table(
    "resource_version", metadata,
    Column("res_type", _c(TYPE), primary_key=True),
    Column("res_id", _c(ID), primary_key=True),
    Column("version_id", Integer, primary_key=True),
    Column("last_updated", _c(INSTANT), nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("content", LargeBinary, nullable=True),
)
Index("ix_version_updated", resource_version.c.last_updated)
Index("ix_version_type_updated", resource_version.c.res_type, resource_version.c.last_updated)


def _index_table(name: str, *columns: Column[object]) -> Table:
    return Table(
        name, metadata,
        Column("res_type", _c(TYPE), nullable=False),
        Column("res_id", _c(ID), nullable=False),
        Column("param", _c(64), nullable=False),
        *columns,
    )


idx_token = _index_table(
    "idx_token",
    Column("system", _c(), nullable=True),
    Column("code", _c(), nullable=True),
    Column("text", Text, nullable=True),  # normalised display / text, for :text
)
Index("ix_token_code", idx_token.c.res_type, idx_token.c.param, idx_token.c.code,
      idx_token.c.system, idx_token.c.res_id)
Index("ix_token_res", idx_token.c.res_type, idx_token.c.res_id, idx_token.c.param,
      idx_token.c.code, idx_token.c.system)

idx_string = _index_table(
    "idx_string",
    Column("value_norm", _c(), nullable=False),  # lower case, accents removed
    Column("value", _c(), nullable=False),
)
Index("ix_string_value", idx_string.c.res_type, idx_string.c.param, idx_string.c.value_norm,
      idx_string.c.res_id)
Index("ix_string_res", idx_string.c.res_type, idx_string.c.res_id, idx_string.c.param)

idx_date = _index_table(
    "idx_date",
    Column("low", BigInteger, nullable=False),  # epoch ms, inclusive
    Column("high", BigInteger, nullable=False),  # epoch ms, exclusive
)
Index("ix_date_low", idx_date.c.res_type, idx_date.c.param, idx_date.c.low, idx_date.c.high,
      idx_date.c.res_id)
Index("ix_date_high", idx_date.c.res_type, idx_date.c.param, idx_date.c.high, idx_date.c.res_id)
Index("ix_date_res", idx_date.c.res_type, idx_date.c.res_id, idx_date.c.param, idx_date.c.low,
      idx_date.c.high)

idx_reference = _index_table(
    "idx_reference",
    Column("target_type", _c(TYPE), nullable=True),
    Column("target_id", _c(ID), nullable=True),
    Column("url", _c(), nullable=True),  # non-local references (absolute, canonical)
)
Index("ix_reference_target", idx_reference.c.target_id, idx_reference.c.target_type,
      idx_reference.c.param, idx_reference.c.res_type, idx_reference.c.res_id)
Index("ix_reference_res", idx_reference.c.res_type, idx_reference.c.res_id, idx_reference.c.param)
Index("ix_reference_url", idx_reference.c.url)

idx_quantity = _index_table(
    "idx_quantity",
    Column("value", Float, nullable=False),
    Column("system", _c(), nullable=True),
    Column("code", _c(), nullable=True),
    Column("unit", Text, nullable=True),
)
Index("ix_quantity_value", idx_quantity.c.res_type, idx_quantity.c.param, idx_quantity.c.code,
      idx_quantity.c.value)
Index("ix_quantity_res", idx_quantity.c.res_type, idx_quantity.c.res_id, idx_quantity.c.param)

idx_uri = _index_table("idx_uri", Column("value", _c(), nullable=False))
Index("ix_uri_value", idx_uri.c.res_type, idx_uri.c.param, idx_uri.c.value, idx_uri.c.res_id)
Index("ix_uri_res", idx_uri.c.res_type, idx_uri.c.res_id, idx_uri.c.param)

idx_number = _index_table("idx_number", Column("value", Float, nullable=False))
Index("ix_number_value", idx_number.c.res_type, idx_number.c.param, idx_number.c.value)
Index("ix_number_res", idx_number.c.res_type, idx_number.c.res_id, idx_number.c.param)

# composite code-value pairs (Observation code-value-*, component-code-value-*, combo-*)
idx_composite = _index_table(
    "idx_composite",
    Column("system", _c(), nullable=True),  # the first component: a token
    Column("code", _c(), nullable=True),
    Column("v_system", _c(), nullable=True),  # the second: token or quantity system/code
    Column("v_code", _c(), nullable=True),
    Column("v_value", Float, nullable=True),  # quantity value
    Column("v_low", BigInteger, nullable=True),  # date range
    Column("v_high", BigInteger, nullable=True),
    Column("v_string", _c(), nullable=True),  # normalised string
)
Index("ix_composite_code", idx_composite.c.res_type, idx_composite.c.param, idx_composite.c.code,
      idx_composite.c.res_id)
Index("ix_composite_res", idx_composite.c.res_type, idx_composite.c.res_id,
      idx_composite.c.param)

INDEX_TABLES = {
    "token": idx_token, "string": idx_string, "date": idx_date, "reference": idx_reference,
    "quantity": idx_quantity, "uri": idx_uri, "number": idx_number, "composite": idx_composite,
}

inbox = Table(
    "inbox", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("sender_application", String(227), nullable=False),
    Column("sender_facility", String(227), nullable=False),
    Column("control_id", String(199), nullable=False),
    Column("raw", LargeBinary, nullable=False),
    Column("received", String(INSTANT), nullable=False),
    Column("transport", String(16), nullable=False),
    Column("site", String(64), nullable=True),
    Column("message_type", String(32), nullable=True),
    Column("status", String(16), nullable=False),
    Column("ack", LargeBinary, nullable=True),
    Column("error", Text, nullable=True),
    Column("report", Text, nullable=True),  # OperationOutcome JSON
    Column("resource_refs", Text, nullable=False),  # JSON list
    Column("ack_ms", Integer, nullable=True),  # receipt to ACK (ms); NULL before 0007
    # the unmapped local codes its report names, JSON [[code, system], …]; NULL: none (0007)
    Column("unmapped", Text, nullable=True),
    UniqueConstraint("sender_application", "sender_facility", "control_id",
                     name="uq_inbox_sender_control"),
)
Index("ix_inbox_status", inbox.c.status, inbox.c.received)
Index("ix_inbox_site", inbox.c.site, inbox.c.received)
Index("ix_inbox_received", inbox.c.received)
# the console's network tiles: counts and ACK latency per site from the index alone
Index("ix_inbox_site_received_status", inbox.c.site, inbox.c.received, inbox.c.status,
      inbox.c.ack_ms)
Index("ix_inbox_transport", inbox.c.transport, inbox.c.received)
# covering: the unmapped-codes page reads the index alone
Index("ix_inbox_unmapped", inbox.c.received, inbox.c.site, inbox.c.transport, inbox.c.unmapped,
      sqlite_where=text("unmapped IS NOT NULL"), postgresql_where=text("unmapped IS NOT NULL"))

outbox = Table(
    "outbox", metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("key", String(TYPE + ID + 1), nullable=False),
    Column("res_type", _c(TYPE), nullable=False),
    Column("res_id", _c(ID), nullable=False),
    Column("version_id", Integer, nullable=False),
    Column("payload", LargeBinary, nullable=True),  # NULL = tombstone
    Column("headers", Text, nullable=False),  # JSON object
    Column("created", String(INSTANT), nullable=False),
    Column("published_at", String(INSTANT), nullable=True),
)
Index("ix_outbox_pending", outbox.c.seq, sqlite_where=text("published_at IS NULL"),
      postgresql_where=text("published_at IS NULL"))

# small key/value facts about the database itself, e.g. ``profile``: "hub" | "edge"
store_setting = Table(
    "store_setting", metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(256), nullable=False),
)

pseudonym_link = Table(
    "pseudonym_link", metadata,
    Column("key", String(128), primary_key=True),
    Column("pseudonym", String(128), nullable=False),
    Column("created", String(INSTANT), nullable=False),
)

# Bulk Data $export jobs (``gateway.export``): who asked, what, and the manifest once done
export_job = Table(
    "export_job", metadata,
    Column("id", String(64), primary_key=True),
    Column("status", String(16), nullable=False),  # accepted|in-progress|completed|error|cancelled
    Column("kind", String(16), nullable=False),  # system | patient | group
    Column("group_id", String(ID), nullable=True),
    Column("request", Text, nullable=False),  # the kick-off URL, as the manifest repeats it
    Column("params", Text, nullable=False),  # JSON: _type, _since, _typeFilter, ...
    Column("client_id", String(256), nullable=False),
    Column("principal", Text, nullable=False),  # JSON: scopes, studies, sites
    Column("transaction_time", String(INSTANT), nullable=False),
    Column("created", String(INSTANT), nullable=False),
    Column("finished", String(INSTANT), nullable=True),
    Column("expires", String(INSTANT), nullable=True),
    Column("progress", Text, nullable=True),
    Column("manifest", Text, nullable=True),  # JSON, once completed
    Column("error", Text, nullable=True),  # no patient data
)
Index("ix_export_job_status", export_job.c.status, export_job.c.created)
# the audit trail (``gateway.audit``): append-only, one row per AuditEvent, hash-chained by
# ``seq`` (no gaps). ``content`` is the event's canonical JSON; the other columns are derived
# from it for search (``gateway audit verify`` checks both). No update or delete path exists
# in the code; on both databases a trigger refuses UPDATE and DELETE (migration 0004).
audit_event = Table(
    "audit_event", metadata,
    Column("seq", BigId, primary_key=True, autoincrement=False),
    Column("recorded_ms", BigInteger, nullable=False),
    Column("agent", _c(256), nullable=False),  # client id, "anonymous", "unauthenticated"
    Column("type", _c(256), nullable=False),  # "\nsystem|code\n"
    Column("subtype", _c(), nullable=False),  # "\nsystem|code\nsystem|code\n"
    Column("action", String(1), nullable=False),
    Column("outcome", String(2), nullable=False),
    Column("entity", _c(), nullable=False),  # "\nPatient/1\nObservation/2\n"
    Column("content", LargeBinary, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)
Index("ix_audit_recorded", audit_event.c.recorded_ms)

# R4 Subscriptions (``gateway.subscriptions``, ``gateway.store.subscriptions``): the
# subscriptions, the change queue a trigger on ``resource_version`` fills (migration 0006:
# in the transaction that makes a version visible, only for types some subscription that
# is not ``off`` watches), and each subscription's pending notifications (at-least-once:
# a row is deleted once its receiver answered 2xx).
subscription = Table(
    "subscription", metadata,
    Column("id", String(ID), primary_key=True),
    Column("res_type", _c(TYPE), nullable=False),  # the criteria's resource type
    Column("status", String(16), nullable=False),  # requested | active | error | off
    Column("client_id", String(256), nullable=False),  # the owner
    Column("principal", Text, nullable=False),  # JSON: scopes, studies, sites (as exports)
    Column("content", Text, nullable=False),  # the Subscription JSON as the client sent it
    Column("version_id", Integer, nullable=False),
    Column("last_updated", String(INSTANT), nullable=False),
    Column("error", Text, nullable=True),  # the last delivery error (scrubbed, bounded)
    Column("failures", Integer, nullable=False),  # consecutive failed attempts
    Column("next_attempt_ms", BigInteger, nullable=False),  # no attempt before (epoch ms)
)
Index("ix_subscription_type", subscription.c.res_type, subscription.c.status)

subscription_change = Table(
    "subscription_change", metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("res_type", _c(TYPE), nullable=False),
    Column("res_id", _c(ID), nullable=False),
    Column("version_id", Integer, nullable=False),
    Column("deleted", Boolean, nullable=False),
)

subscription_delivery = Table(
    "subscription_delivery", metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("subscription_id", String(ID), nullable=False),
    Column("res_type", _c(TYPE), nullable=False),
    Column("res_id", _c(ID), nullable=False),
    Column("version_id", Integer, nullable=False),
    Column("queued_ms", BigInteger, nullable=False),  # when the change was matched
)
Index("ix_subscription_delivery_sub", subscription_delivery.c.subscription_id,
      subscription_delivery.c.seq)
