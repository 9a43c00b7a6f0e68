"""report read models

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""
from alembic import op
import sqlalchemy as sa

import crm_common.types
from sqlalchemy.dialects import postgresql

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('contract_facts',
    sa.Column('contract_id', sa.String(length=36), nullable=False),
    sa.Column('customer_id', sa.String(length=36), nullable=False),
    sa.Column('owner_id', sa.String(length=36), nullable=True),
    sa.Column('owner_team_id', sa.String(length=64), nullable=True),
    sa.Column('title', sa.String(length=200), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('value', sa.Numeric(precision=18, scale=2), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('start_date', sa.Date(), nullable=False),
    sa.Column('end_date', sa.Date(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('refreshed_at', crm_common.types.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('contract_id')
    )
    with op.batch_alter_table('contract_facts', schema=None) as batch_op:
        batch_op.create_index('ix_contract_facts_owner', ['owner_id'], unique=False)
        batch_op.create_index('ix_contract_facts_status_end', ['status', 'end_date'], unique=False)
        batch_op.create_index('ix_contract_facts_team', ['owner_team_id'], unique=False)

    op.create_table('customer_merges',
    sa.Column('source_id', sa.String(length=36), nullable=False),
    sa.Column('target_id', sa.String(length=36), nullable=False),
    sa.Column('merged_at', crm_common.types.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('source_id')
    )
    with op.batch_alter_table('customer_merges', schema=None) as batch_op:
        batch_op.create_index('ix_customer_merges_target', ['target_id'], unique=False)

    op.create_table('customer_last_followups',
    sa.Column('customer_id', sa.String(length=36), nullable=False),
    sa.Column('last_followup_at', crm_common.types.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('customer_id')
    )
    op.create_table('followup_facts',
    sa.Column('followup_id', sa.String(length=36), nullable=False),
    sa.Column('customer_id', sa.String(length=36), nullable=False),
    sa.Column('owner_id', sa.String(length=36), nullable=True),
    sa.Column('owner_team_id', sa.String(length=64), nullable=True),
    sa.Column('logged_by', sa.String(length=36), nullable=True),
    sa.Column('type', sa.String(length=20), nullable=False),
    sa.Column('occurred_at', crm_common.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('occurred_on', sa.Date(), nullable=False),
    sa.Column('refreshed_at', crm_common.types.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('followup_id')
    )
    with op.batch_alter_table('followup_facts', schema=None) as batch_op:
        batch_op.create_index('ix_followup_facts_customer_occurred', ['customer_id', 'occurred_at'], unique=False)
        batch_op.create_index('ix_followup_facts_logged_by_occurred_on', ['logged_by', 'occurred_on'], unique=False)
        batch_op.create_index('ix_followup_facts_occurred_on', ['occurred_on'], unique=False)

    op.create_table('opportunity_facts',
    sa.Column('opportunity_id', sa.String(length=36), nullable=False),
    sa.Column('customer_id', sa.String(length=36), nullable=False),
    sa.Column('owner_id', sa.String(length=36), nullable=True),
    sa.Column('owner_team_id', sa.String(length=64), nullable=True),
    sa.Column('pipeline_id', sa.String(length=36), nullable=False),
    sa.Column('stage', sa.String(length=64), nullable=False),
    sa.Column('stage_position', sa.Integer(), nullable=True),
    sa.Column('furthest_position', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('amount', sa.Numeric(precision=18, scale=2), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('probability', sa.Integer(), nullable=False),
    sa.Column('expected_close_date', sa.Date(), nullable=True),
    sa.Column('created_at', crm_common.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('closed_at', crm_common.types.UtcDateTime(timezone=True), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('refreshed_at', crm_common.types.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('opportunity_id')
    )
    with op.batch_alter_table('opportunity_facts', schema=None) as batch_op:
        batch_op.create_index('ix_opportunity_facts_owner', ['owner_id'], unique=False)
        batch_op.create_index('ix_opportunity_facts_pipeline_created', ['pipeline_id', 'created_at'], unique=False)
        batch_op.create_index('ix_opportunity_facts_status_close', ['status', 'expected_close_date'], unique=False)
        batch_op.create_index('ix_opportunity_facts_team', ['owner_team_id'], unique=False)

    op.create_table('order_facts',
    sa.Column('order_id', sa.String(length=36), nullable=False),
    sa.Column('customer_id', sa.String(length=36), nullable=False),
    sa.Column('owner_id', sa.String(length=36), nullable=True),
    sa.Column('owner_team_id', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('counted', sa.Boolean(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('total', sa.Numeric(precision=18, scale=2), nullable=False),
    sa.Column('paid_amount', sa.Numeric(precision=18, scale=2), nullable=False),
    sa.Column('placed_at', crm_common.types.UtcDateTime(timezone=True), nullable=True),
    sa.Column('placed_on', sa.Date(), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('refreshed_at', crm_common.types.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('order_id')
    )
    with op.batch_alter_table('order_facts', schema=None) as batch_op:
        batch_op.create_index('ix_order_facts_customer', ['customer_id', 'currency'], unique=False,
                              postgresql_include=['placed_on', 'counted', 'total', 'paid_amount'])
        batch_op.create_index('ix_order_facts_owner_placed_on', ['owner_id', 'placed_on'], unique=False)
        batch_op.create_index('ix_order_facts_placed_on', ['placed_on'], unique=False)
        batch_op.create_index('ix_order_facts_team_placed_on', ['owner_team_id', 'placed_on'], unique=False)

    op.create_table('order_line_facts',
    sa.Column('order_id', sa.String(length=36), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('product_id', sa.String(length=36), nullable=True),
    sa.Column('sku', sa.String(length=64), nullable=True),
    sa.Column('description', sa.String(length=500), nullable=True),
    sa.Column('quantity', sa.Numeric(precision=18, scale=3), nullable=False),
    sa.Column('total', sa.Numeric(precision=18, scale=2), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('customer_id', sa.String(length=36), nullable=False),
    sa.Column('owner_id', sa.String(length=36), nullable=True),
    sa.Column('owner_team_id', sa.String(length=64), nullable=True),
    sa.Column('counted', sa.Boolean(), nullable=False),
    sa.Column('placed_on', sa.Date(), nullable=True),
    sa.Column('refreshed_at', crm_common.types.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('order_id', 'position')
    )
    with op.batch_alter_table('order_line_facts', schema=None) as batch_op:
        batch_op.create_index('ix_order_line_facts_owner_placed_on', ['owner_id', 'placed_on'], unique=False)
        batch_op.create_index('ix_order_line_facts_placed_on', ['placed_on'], unique=False)
        batch_op.create_index('ix_order_line_facts_product_placed_on', ['product_id', 'placed_on'], unique=False)

    op.create_table('rebuild_runs',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('requested_by', sa.String(length=36), nullable=True),
    sa.Column('started_at', crm_common.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', crm_common.types.UtcDateTime(timezone=True), nullable=True),
    sa.Column('heartbeat_at', crm_common.types.UtcDateTime(timezone=True), nullable=True),
    sa.Column('counts', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('stage_change_facts',
    sa.Column('stage_change_id', sa.String(length=36), nullable=False),
    sa.Column('opportunity_id', sa.String(length=36), nullable=False),
    sa.Column('pipeline_id', sa.String(length=36), nullable=False),
    sa.Column('owner_id', sa.String(length=36), nullable=True),
    sa.Column('owner_team_id', sa.String(length=64), nullable=True),
    sa.Column('from_stage', sa.String(length=64), nullable=True),
    sa.Column('to_stage', sa.String(length=64), nullable=False),
    sa.Column('to_stage_position', sa.Integer(), nullable=True),
    sa.Column('to_outcome', sa.String(length=10), nullable=False),
    sa.Column('changed_at', crm_common.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('seconds_in_previous_stage', sa.Integer(), nullable=True),
    sa.Column('opportunity_created_at', crm_common.types.UtcDateTime(timezone=True), nullable=True),
    sa.Column('refreshed_at', crm_common.types.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('stage_change_id')
    )
    with op.batch_alter_table('stage_change_facts', schema=None) as batch_op:
        batch_op.create_index('ix_stage_change_facts_opportunity', ['opportunity_id'], unique=False)
        batch_op.create_index('ix_stage_change_facts_pipeline_cohort', ['pipeline_id', 'opportunity_created_at'], unique=False)

    with op.batch_alter_table('customer_facts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('name', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('created_on', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('churned_on', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('refreshed_at', crm_common.types.UtcDateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_customer_facts_churned_on', ['churned_on'], unique=False)
        batch_op.create_index('ix_customer_facts_created_on', ['created_on'], unique=False)

    # Rows from before this revision get their creation day; POST /reports/rebuild fills the rest (names, churn days).
    day = "date(created_at)" if op.get_bind().dialect.name == "sqlite" else "CAST(created_at AT TIME ZONE 'UTC' AS DATE)"
    op.execute(f"UPDATE customer_facts SET created_on = {day}")


def downgrade():
    with op.batch_alter_table('customer_facts', schema=None) as batch_op:
        batch_op.drop_index('ix_customer_facts_created_on')
        batch_op.drop_index('ix_customer_facts_churned_on')
        batch_op.drop_column('refreshed_at')
        batch_op.drop_column('churned_on')
        batch_op.drop_column('created_on')
        batch_op.drop_column('name')

    with op.batch_alter_table('stage_change_facts', schema=None) as batch_op:
        batch_op.drop_index('ix_stage_change_facts_pipeline_cohort')
        batch_op.drop_index('ix_stage_change_facts_opportunity')

    op.drop_table('stage_change_facts')
    op.drop_table('rebuild_runs')
    with op.batch_alter_table('order_line_facts', schema=None) as batch_op:
        batch_op.drop_index('ix_order_line_facts_product_placed_on')
        batch_op.drop_index('ix_order_line_facts_placed_on')
        batch_op.drop_index('ix_order_line_facts_owner_placed_on')

    op.drop_table('order_line_facts')
    with op.batch_alter_table('order_facts', schema=None) as batch_op:
        batch_op.drop_index('ix_order_facts_team_placed_on')
        batch_op.drop_index('ix_order_facts_placed_on')
        batch_op.drop_index('ix_order_facts_owner_placed_on')
        batch_op.drop_index('ix_order_facts_customer')

    op.drop_table('order_facts')
    with op.batch_alter_table('opportunity_facts', schema=None) as batch_op:
        batch_op.drop_index('ix_opportunity_facts_team')
        batch_op.drop_index('ix_opportunity_facts_status_close')
        batch_op.drop_index('ix_opportunity_facts_pipeline_created')
        batch_op.drop_index('ix_opportunity_facts_owner')

    op.drop_table('opportunity_facts')
    with op.batch_alter_table('followup_facts', schema=None) as batch_op:
        batch_op.drop_index('ix_followup_facts_occurred_on')
        batch_op.drop_index('ix_followup_facts_logged_by_occurred_on')
        batch_op.drop_index('ix_followup_facts_customer_occurred')

    op.drop_table('followup_facts')
    with op.batch_alter_table('customer_merges', schema=None) as batch_op:
        batch_op.drop_index('ix_customer_merges_target')

    op.drop_table('customer_merges')
    op.drop_table('customer_last_followups')
    with op.batch_alter_table('contract_facts', schema=None) as batch_op:
        batch_op.drop_index('ix_contract_facts_team')
        batch_op.drop_index('ix_contract_facts_status_end')
        batch_op.drop_index('ix_contract_facts_owner')

    op.drop_table('contract_facts')
