"""indexes for the rollup rows of one owner or one team

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

A rep's or a manager's funnel read the pipeline's whole date range over every owner (the primary
key starts with pipeline and day), and a manager's sales by period had no team index.
"""
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

INDEXES = (
    ("ix_sales_day_rollups_team_day", "sales_day_rollups", ["owner_team_id", "day"]),
    ("ix_funnel_cohort_rollups_owner", "funnel_cohort_rollups", ["pipeline_id", "owner_id", "created_on"]),
    ("ix_funnel_cohort_rollups_team", "funnel_cohort_rollups", ["pipeline_id", "owner_team_id", "created_on"]),
    ("ix_funnel_stage_time_rollups_owner", "funnel_stage_time_rollups", ["pipeline_id", "owner_id", "created_on"]),
    ("ix_funnel_stage_time_rollups_team", "funnel_stage_time_rollups",
     ["pipeline_id", "owner_team_id", "created_on"]),
)


def upgrade():
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)


def downgrade():
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
