"""idempotency record bodies encrypted at rest

A stored body is a whole answer of the API (a customer with their phones,
emails and addresses). The column stays TEXT (EncryptedText stores the
``enc1:<kid>:...`` token as text); this encrypts the rows stored before.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""
from alembic import op

from crm_common.data_keys import seal_column, unseal_column


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    seal_column(op.get_bind(), 'idempotency_records', ['user_id', 'key'], 'body')


def downgrade():
    unseal_column(op.get_bind(), 'idempotency_records', ['user_id', 'key'], 'body')
