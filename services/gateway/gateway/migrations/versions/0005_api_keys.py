"""api keys and rate-limit windows

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""
from alembic import op
import sqlalchemy as sa

import crm_common.types


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('api_keys',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('secret_hash', sa.String(length=64), nullable=False),
    sa.Column('scopes', sa.Text(), nullable=False),
    sa.Column('created_by', sa.String(length=36), nullable=False),
    sa.Column('rate_limit_per_minute', sa.Integer(), nullable=True),
    sa.Column('created_at', crm_common.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', crm_common.types.UtcDateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', crm_common.types.UtcDateTime(timezone=True), nullable=True),
    sa.Column('last_used_at', crm_common.types.UtcDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.create_index('ix_api_keys_created_at_id', ['created_at', 'id'], unique=False)
        batch_op.create_index('ix_api_keys_created_by', ['created_by'], unique=False)

    op.create_table('rate_limit_windows',
    sa.Column('principal', sa.String(length=80), nullable=False),
    sa.Column('minute', sa.Integer(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('principal', 'minute')
    )
    with op.batch_alter_table('rate_limit_windows', schema=None) as batch_op:
        batch_op.create_index('ix_rate_limit_windows_minute', ['minute'], unique=False)


def downgrade():
    with op.batch_alter_table('rate_limit_windows', schema=None) as batch_op:
        batch_op.drop_index('ix_rate_limit_windows_minute')

    op.drop_table('rate_limit_windows')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_index('ix_api_keys_created_by')
        batch_op.drop_index('ix_api_keys_created_at_id')

    op.drop_table('api_keys')
