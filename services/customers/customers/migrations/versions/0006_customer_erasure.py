"""customers remember when their personal data was erased

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29

An erased customer stays as an anonymised record (orders in sales keep
pointing at it); ``erased_at`` says it was erased, so a second erase is
refused and the record reads as what it is.
"""
from alembic import op
import sqlalchemy as sa

import crm_common.types


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('erased_at', crm_common.types.UtcDateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_column('erased_at')
