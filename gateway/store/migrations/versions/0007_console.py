"""Console: ``inbox.ack_ms`` (receipt to ACK, for the network page's p50/p99),
``inbox.unmapped`` (the unmapped local codes its report names, as JSON), and indexes so that each
console page reads an index range instead of the whole inbox

Revision ID: 0007_console
Revises: 0006_subscription
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_console"
down_revision = "0006_subscription"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inbox") as batch:
        batch.add_column(sa.Column("ack_ms", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("unmapped", sa.Text(), nullable=True))
    op.create_index("ix_inbox_site_received_status", "inbox",
                    ["site", "received", "status", "ack_ms"])
    op.create_index("ix_inbox_transport", "inbox", ["transport", "received"])
    op.create_index("ix_inbox_unmapped", "inbox", ["received", "site", "transport", "unmapped"],
                    sqlite_where=sa.text("unmapped IS NOT NULL"),
                    postgresql_where=sa.text("unmapped IS NOT NULL"))


def downgrade() -> None:
    for name in ("ix_inbox_unmapped", "ix_inbox_transport", "ix_inbox_site_received_status"):
        op.drop_index(name, table_name="inbox")
    with op.batch_alter_table("inbox") as batch:
        batch.drop_column("unmapped")
        batch.drop_column("ack_ms")
