"""gateway instances' heartbeats, for rate limits kept in memory

Each gateway instance now holds its rate-limit buckets in memory and divides
the limit by the number of live instances, which it counts from the
heartbeat rows in gateway_instances. rate_limit_windows is no longer used but
stays: during a rolling update the previous release's instances still write
it on every request. A later migration drops it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""
from alembic import op
import sqlalchemy as sa

import crm_common.types


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('gateway_instances',
    sa.Column('id', sa.String(length=120), nullable=False),
    sa.Column('last_seen', crm_common.types.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )


def downgrade():
    op.drop_table('gateway_instances')
