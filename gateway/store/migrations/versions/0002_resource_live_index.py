"""covering index for choosing search pages without reading content

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_resource_live", "resource",
                    ["res_type", "res_id", "deleted", "last_updated"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_resource_live", table_name="resource")
