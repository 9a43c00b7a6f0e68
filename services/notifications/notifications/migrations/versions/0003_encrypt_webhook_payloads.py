"""webhook delivery payloads encrypted at rest

The payload is an event envelope, which carries customer snapshots (phones,
emails, addresses). The column stays TEXT (EncryptedText stores the
``enc1:<kid>:...`` token as text); this encrypts the rows stored before.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""
from alembic import op

from crm_common.data_keys import seal_column, unseal_column


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    seal_column(op.get_bind(), 'webhook_deliveries', ['id'], 'payload')


def downgrade():
    unseal_column(op.get_bind(), 'webhook_deliveries', ['id'], 'payload')
