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
    op.create_table('customer_facts',
    sa.Column('customer_id', sa.String(length=36), nullable=False),
    sa.Column('owner_id', sa.String(length=36), nullable=True),
    sa.Column('owner_team_id', sa.String(length=64), nullable=True),
    sa.Column('lifecycle_stage', sa.String(length=20), nullable=False),
    sa.Column('region', sa.String(length=100), nullable=True),
    sa.Column('industry', sa.String(length=100), nullable=True),
    sa.Column('tier', sa.String(length=10), nullable=True),
    sa.Column('source', sa.String(length=100), nullable=True),
    sa.Column('created_at', crm_common.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('customer_id')
    )
    with op.batch_alter_table('customer_facts', schema=None) as batch_op:
        batch_op.create_index('ix_customer_facts_owner', ['owner_id'], unique=False)
        batch_op.create_index('ix_customer_facts_team', ['owner_team_id'], unique=False)

    create_kernel_tables_v1(op)


def downgrade():
    op.drop_table('crm_processed_events')
    op.drop_table('crm_outbox')
    with op.batch_alter_table('customer_facts', schema=None) as batch_op:
        batch_op.drop_index('ix_customer_facts_team')
        batch_op.drop_index('ix_customer_facts_owner')

    op.drop_table('customer_facts')
