"""import job heartbeat

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29

A running import job renews heartbeat_at with each chunk it writes, so a job
whose process died can be told apart from a long one and marked failed.
"""
from alembic import op
import sqlalchemy as sa

import crm_common.types


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('import_jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('heartbeat_at', crm_common.types.UtcDateTime(timezone=True), nullable=True))



def downgrade():
    with op.batch_alter_table('import_jobs', schema=None) as batch_op:
        batch_op.drop_column('heartbeat_at')

