"""revoked sessions (logout) and sign-in throttles

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""
from alembic import op
import sqlalchemy as sa

import crm_common.types


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('revoked_sessions',
    sa.Column('session_id', sa.String(length=36), nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('revoked_at', crm_common.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', crm_common.types.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('session_id')
    )
    op.create_index('ix_revoked_sessions_expires_at', 'revoked_sessions', ['expires_at'], unique=False)
    op.create_table('sign_in_throttles',
    sa.Column('key', sa.String(length=300), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('window_started_at', crm_common.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('locked_until', crm_common.types.UtcDateTime(timezone=True), nullable=True),
    sa.Column('lockouts', sa.Integer(), nullable=False),
    sa.Column('updated_at', crm_common.types.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_index('ix_sign_in_throttles_updated_at', 'sign_in_throttles', ['updated_at'], unique=False)


def downgrade():
    op.drop_index('ix_sign_in_throttles_updated_at', table_name='sign_in_throttles')
    op.drop_table('sign_in_throttles')
    op.drop_index('ix_revoked_sessions_expires_at', table_name='revoked_sessions')
    op.drop_table('revoked_sessions')
