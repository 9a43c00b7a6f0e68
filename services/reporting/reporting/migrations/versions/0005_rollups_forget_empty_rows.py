"""rollup triggers delete a row once no fact counts there; the zero rows left so far go

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

The triggers come from reporting.rollups (create_triggers replaces them). Zero rows equal no row
in every report and in the consistency check, so deleting them changes no figure.
"""
from alembic import op

from reporting import rollups

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    connection = op.get_bind()
    # The rollups of 0004; later ones (0007) are not there yet.
    tables = ('sales_day_rollups', 'funnel_cohort_rollups', 'funnel_stage_time_rollups', 'pipeline_stage_rollups')
    rollups.create_triggers(connection, tables=tables, region_copy=False)
    rollups.forget_empty_rows(connection, tables=tables)


def downgrade():
    # Nothing to undo: these triggers keep the rollups equal to the facts as 0004's did, and the
    # zero rows deleted are missed by nothing.
    pass
