"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-28
"""
from alembic import op
import sqlalchemy as sa

import crm_common.types
from crm_common.migrate import create_kernel_tables_v1


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('notifications',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('type', sa.String(length=100), nullable=False),
    sa.Column('title', sa.String(length=300), nullable=False),
    sa.Column('body', sa.Text(), nullable=True),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('read_at', crm_common.types.UtcDateTime(timezone=True), nullable=True),
    sa.Column('created_at', crm_common.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('source_event_id', sa.String(length=36), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('source_event_id', 'user_id', name='uq_notifications_event_user')
    )
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.create_index('ix_notifications_user_created', ['user_id', 'created_at', 'id'], unique=False)
        batch_op.create_index('ix_notifications_user_unread', ['user_id', 'created_at', 'id'], unique=False, postgresql_where=sa.text('read_at IS NULL'), sqlite_where=sa.text('read_at IS NULL'))

    create_kernel_tables_v1(op)


def downgrade():
    op.drop_table('crm_processed_events')
    op.drop_table('crm_outbox')
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_index('ix_notifications_user_unread', postgresql_where=sa.text('read_at IS NULL'), sqlite_where=sa.text('read_at IS NULL'))
        batch_op.drop_index('ix_notifications_user_created')

    op.drop_table('notifications')
