"""store settings: what the database keeps (profile hub | edge, ``gateway.store.profile``)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "store_setting",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=256), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    # every database before this revision kept everything
    op.bulk_insert(table, [{"name": "profile", "value": "hub"}])


def downgrade() -> None:
    op.drop_table("store_setting")
