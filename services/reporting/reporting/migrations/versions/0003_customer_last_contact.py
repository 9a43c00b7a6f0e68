"""customer_facts.last_contact_at: the activities report's inactive customers by index

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""
from alembic import op
import sqlalchemy as sa

import crm_common.types


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('customer_facts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_contact_at', crm_common.types.UtcDateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_customer_facts_last_contact', ['last_contact_at'], unique=False)
    op.execute("""
        UPDATE customer_facts SET last_contact_at = COALESCE(
            (SELECT last_followup_at FROM customer_last_followups
              WHERE customer_last_followups.customer_id = customer_facts.customer_id),
            created_at)
    """)


def downgrade():
    with op.batch_alter_table('customer_facts', schema=None) as batch_op:
        batch_op.drop_index('ix_customer_facts_last_contact')
        batch_op.drop_column('last_contact_at')
