"""rollups for sales-by-period and the funnel, kept by triggers on the facts

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07

The trigger SQL comes from reporting.rollups, the one description of each rollup (the consistency
check and the rebuild use it too). A later change to a rollup's definition must come with a
migration of its own that creates the triggers and recomputes the rollups again.
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.orm import Session

from reporting import rollups

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

# This revision's rollups (later revisions add others, whose tables are not there yet).
ROLLUP_TABLES = ('sales_day_rollups', 'funnel_cohort_rollups', 'funnel_stage_time_rollups',
                 'pipeline_stage_rollups')


def upgrade():
    op.create_table('sales_day_rollups',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('owner_id', sa.String(length=36), nullable=False),
    sa.Column('owner_team_id', sa.String(length=64), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('orders', sa.Integer(), nullable=False),
    sa.Column('revenue', sa.Numeric(precision=18, scale=2), nullable=False),
    sa.Column('paid', sa.Numeric(precision=18, scale=2), nullable=False),
    sa.PrimaryKeyConstraint('day', 'owner_id', 'owner_team_id', 'currency')
    )
    with op.batch_alter_table('sales_day_rollups', schema=None) as batch_op:
        batch_op.create_index('ix_sales_day_rollups_owner_day', ['owner_id', 'day'], unique=False)

    op.create_table('funnel_cohort_rollups',
    sa.Column('pipeline_id', sa.String(length=36), nullable=False),
    sa.Column('created_on', sa.Date(), nullable=False),
    sa.Column('owner_id', sa.String(length=36), nullable=False),
    sa.Column('owner_team_id', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('furthest_position', sa.Integer(), nullable=False),
    sa.Column('lost_stage', sa.String(length=64), nullable=False),
    sa.Column('opportunities', sa.Integer(), nullable=False),
    sa.Column('closed', sa.Integer(), nullable=False),
    sa.Column('cycle_seconds', sa.Numeric(precision=20, scale=6), nullable=False),
    sa.PrimaryKeyConstraint('pipeline_id', 'created_on', 'owner_id', 'owner_team_id', 'status',
                            'furthest_position', 'lost_stage')
    )
    op.create_table('funnel_stage_time_rollups',
    sa.Column('pipeline_id', sa.String(length=36), nullable=False),
    sa.Column('created_on', sa.Date(), nullable=False),
    sa.Column('owner_id', sa.String(length=36), nullable=False),
    sa.Column('owner_team_id', sa.String(length=64), nullable=False),
    sa.Column('from_stage', sa.String(length=64), nullable=False),
    sa.Column('changes', sa.Integer(), nullable=False),
    sa.Column('seconds', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('pipeline_id', 'created_on', 'owner_id', 'owner_team_id', 'from_stage')
    )
    op.create_table('pipeline_stage_rollups',
    sa.Column('pipeline_id', sa.String(length=36), nullable=False),
    sa.Column('to_stage', sa.String(length=64), nullable=False),
    sa.Column('to_stage_position', sa.Integer(), nullable=False),
    sa.Column('to_outcome', sa.String(length=10), nullable=False),
    sa.Column('changes', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('pipeline_id', 'to_stage', 'to_stage_position', 'to_outcome')
    )
    bind = op.get_bind()
    # Filled from the facts already held, then kept by the triggers from here on (one transaction).
    rollups.recompute(Session(bind=bind), tables=ROLLUP_TABLES)
    rollups.create_triggers(bind, tables=ROLLUP_TABLES, region_copy=False)


def downgrade():
    rollups.drop_triggers(op.get_bind())
    for table in ('pipeline_stage_rollups', 'funnel_stage_time_rollups', 'funnel_cohort_rollups',
                  'sales_day_rollups'):
        op.drop_table(table)
