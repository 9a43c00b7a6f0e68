"""events an import job holds back until it ends

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29

A running import job writes the customer.imported events of each chunk here,
in the chunk's transaction; the transaction that ends the job (done or
failed) moves them to the outbox. The consumers (sales' replica, reporting)
then catch up after the import instead of competing with its writes.
"""
from alembic import op
import sqlalchemy as sa

import crm_common.types


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'import_job_events',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('job_id', sa.String(length=36), nullable=False),
        sa.Column('event_id', sa.String(length=36), nullable=False),
        sa.Column('event_type', sa.String(length=100), nullable=False),
        sa.Column('payload', sa.Text(), nullable=False),
        sa.Column('created_at', crm_common.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('import_job_events', schema=None) as batch_op:
        batch_op.create_index('ix_import_job_events_job', ['job_id', 'id'], unique=False)


def downgrade():
    with op.batch_alter_table('import_job_events', schema=None) as batch_op:
        batch_op.drop_index('ix_import_job_events_job')
    op.drop_table('import_job_events')
