"""widgets and the kernel tables

Revision ID: 0001
Revises:
"""
from alembic import op
import sqlalchemy as sa

import crm_common.types
from crm_common.migrate import create_kernel_tables_v1

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "widgets",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(50), nullable=False),
        sa.Column("created_at", crm_common.types.UtcDateTime(), nullable=False),
    )
    create_kernel_tables_v1(op)


def downgrade():
    op.drop_table("crm_processed_events")
    op.drop_table("crm_outbox")
    op.drop_table("widgets")
