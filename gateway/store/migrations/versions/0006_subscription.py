"""R4 Subscriptions: ``subscription``, ``subscription_change``, ``subscription_delivery``
(``gateway.subscriptions``)

A trigger on ``resource_version`` queues every new version of a type that a subscription
(not ``off``) watches into ``subscription_change``, in the transaction that writes it: the
projector's COPY batches, the FHIR API's writes and the ingest alike, with nothing to hook
in the code and nothing lost between a commit and a crash. PostgreSQL: one statement-level
trigger with a transition table (one INSERT … SELECT per statement, not one per row);
SQLite: a row trigger with a WHEN clause.

Revision ID: 0006_subscription
Revises: 0005_export_job
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_subscription"
down_revision = "0005_export_job"
branch_labels = None
depends_on = None

PG_UP = (
    "CREATE FUNCTION subscription_capture() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "INSERT INTO subscription_change (res_type, res_id, version_id, deleted) "
    "SELECT n.res_type, n.res_id, n.version_id, n.deleted FROM new_versions n WHERE "
    "EXISTS (SELECT 1 FROM subscription s WHERE s.res_type = n.res_type "
    "AND s.status <> 'off') ORDER BY n.res_type, n.res_id, n.version_id; RETURN NULL; END $$",
    "CREATE TRIGGER subscription_capture AFTER INSERT ON resource_version "
    "REFERENCING NEW TABLE AS new_versions FOR EACH STATEMENT "
    "EXECUTE FUNCTION subscription_capture()",
)
PG_DOWN = ("DROP TRIGGER IF EXISTS subscription_capture ON resource_version",
           "DROP FUNCTION IF EXISTS subscription_capture()")
SQLITE_UP = (
    "CREATE TRIGGER subscription_capture AFTER INSERT ON resource_version "
    "WHEN EXISTS (SELECT 1 FROM subscription s WHERE s.res_type = NEW.res_type "
    "AND s.status <> 'off') BEGIN "
    "INSERT INTO subscription_change (res_type, res_id, version_id, deleted) "
    "VALUES (NEW.res_type, NEW.res_id, NEW.version_id, NEW.deleted); END",
)
SQLITE_DOWN = ("DROP TRIGGER IF EXISTS subscription_capture",)


def _c(length: int | None = None) -> sa.types.TypeEngine[str]:
    plain: sa.types.TypeEngine[str] = sa.String(length) if length else sa.Text()
    ordered = sa.String(length, collation="C") if length else sa.Text(collation="C")
    return plain.with_variant(ordered, "postgresql")


def _big_id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "subscription",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("res_type", _c(64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("client_id", sa.String(length=256), nullable=False),
        sa.Column("principal", sa.Text(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("last_updated", sa.String(length=32), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("next_attempt_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_subscription_type", "subscription", ["res_type", "status"])
    op.create_table(
        "subscription_change",
        sa.Column("seq", _big_id(), autoincrement=True, nullable=False),
        sa.Column("res_type", _c(64), nullable=False),
        sa.Column("res_id", _c(64), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_table(
        "subscription_delivery",
        sa.Column("seq", _big_id(), autoincrement=True, nullable=False),
        sa.Column("subscription_id", sa.String(length=64), nullable=False),
        sa.Column("res_type", _c(64), nullable=False),
        sa.Column("res_id", _c(64), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("queued_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_subscription_delivery_sub", "subscription_delivery",
                    ["subscription_id", "seq"])
    dialect = op.get_bind().dialect.name
    for statement in PG_UP if dialect == "postgresql" else SQLITE_UP:
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in PG_DOWN if dialect == "postgresql" else SQLITE_DOWN:
        op.execute(statement)
    op.drop_index("ix_subscription_delivery_sub", table_name="subscription_delivery")
    op.drop_table("subscription_delivery")
    op.drop_table("subscription_change")
    op.drop_index("ix_subscription_type", table_name="subscription")
    op.drop_table("subscription")
