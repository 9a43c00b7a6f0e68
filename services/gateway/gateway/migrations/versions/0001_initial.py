"""initial schema: users, refresh tokens, kernel tables

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
    op.create_table(
        'users',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('email', sa.String(length=254), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('role', sa.String(length=20), nullable=False),
        sa.Column('team_id', sa.String(length=64), nullable=True),
        sa.Column('password_hash', sa.String(length=255), nullable=False),
        sa.Column('created_at', crm_common.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column('updated_at', crm_common.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_users_email', 'users', ['email'], unique=True)
    op.create_index('ix_users_created_at_id', 'users', ['created_at', 'id'], unique=False)
    op.create_index('ix_users_role', 'users', ['role'], unique=False)
    op.create_table(
        'refresh_tokens',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('family_id', sa.String(length=36), nullable=False),
        sa.Column('user_id', sa.String(length=36), nullable=False),
        sa.Column('created_at', crm_common.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column('expires_at', crm_common.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column('used_at', crm_common.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column('revoked_at', crm_common.types.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_refresh_tokens_token_hash', 'refresh_tokens', ['token_hash'], unique=True)
    op.create_index('ix_refresh_tokens_family_id', 'refresh_tokens', ['family_id'], unique=False)
    op.create_index('ix_refresh_tokens_user_id', 'refresh_tokens', ['user_id'], unique=False)
    create_kernel_tables_v1(op)


def downgrade():
    op.drop_table('crm_processed_events')
    op.drop_index('ix_crm_outbox_pending', table_name='crm_outbox')
    op.drop_table('crm_outbox')
    op.drop_index('ix_refresh_tokens_user_id', table_name='refresh_tokens')
    op.drop_index('ix_refresh_tokens_family_id', table_name='refresh_tokens')
    op.drop_index('ix_refresh_tokens_token_hash', table_name='refresh_tokens')
    op.drop_table('refresh_tokens')
    op.drop_index('ix_users_role', table_name='users')
    op.drop_index('ix_users_created_at_id', table_name='users')
    op.drop_index('ix_users_email', table_name='users')
    op.drop_table('users')
