"""customer domain

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29

The full customer domain: company and contact details (phones and emails
move from two columns into ``contact``), custom fields, history, contacts,
follow-ups, saved views, import jobs, and what search and duplicate
detection read (search_text, dedupe_key, customer_identifiers).
"""
import unicodedata

from alembic import op
import sqlalchemy as sa

import crm_common.types
from sqlalchemy.dialects import postgresql

JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('customer_field_definitions',
    sa.Column('key', sa.String(length=50), nullable=False),
    sa.Column('label', sa.String(length=100), nullable=False),
    sa.Column('type', sa.String(length=10), nullable=False),
    sa.Column('choices', JSON_DOCUMENT, nullable=False),
    sa.Column('required', sa.Boolean(), nullable=False),
    sa.Column('created_by', sa.String(length=36), nullable=True),
    sa.Column('created_at', crm_common.types.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('customer_views',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('filters', JSON_DOCUMENT, nullable=False),
    sa.Column('sort', sa.String(length=30), nullable=True),
    sa.Column('created_at', crm_common.types.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('user_id', 'name', name='uq_customer_views_user_name')
    )
    op.create_table('import_jobs',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('file_format', sa.String(length=4), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=True),
    sa.Column('mapping', JSON_DOCUMENT, nullable=False),
    sa.Column('dry_run', sa.Boolean(), nullable=False),
    sa.Column('on_duplicate', sa.String(length=10), nullable=False),
    sa.Column('owner_teams', JSON_DOCUMENT, nullable=False),
    sa.Column('total_rows', sa.Integer(), nullable=True),
    sa.Column('done_rows', sa.Integer(), nullable=False),
    sa.Column('report', JSON_DOCUMENT, nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_by', sa.String(length=36), nullable=True),
    sa.Column('created_by_role', sa.String(length=20), nullable=True),
    sa.Column('created_by_team_id', sa.String(length=64), nullable=True),
    sa.Column('request_id', sa.String(length=128), nullable=True),
    sa.Column('created_at', crm_common.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('started_at', crm_common.types.UtcDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', crm_common.types.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('import_jobs', schema=None) as batch_op:
        batch_op.create_index('ix_import_jobs_status', ['status', 'created_at'], unique=False)

    op.create_table('contacts',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('customer_id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('title', sa.String(length=100), nullable=True),
    sa.Column('phones', JSON_DOCUMENT, nullable=False),
    sa.Column('emails', JSON_DOCUMENT, nullable=False),
    sa.Column('is_primary', sa.Boolean(), nullable=False),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.Column('created_by', sa.String(length=36), nullable=True),
    sa.Column('created_at', crm_common.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', crm_common.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.create_index('ix_contacts_customer', ['customer_id', 'created_at'], unique=False)

    op.create_table('customer_history',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('customer_id', sa.String(length=36), nullable=False),
    sa.Column('action', sa.String(length=30), nullable=False),
    sa.Column('changes', JSON_DOCUMENT, nullable=False),
    sa.Column('actor_id', sa.String(length=36), nullable=True),
    sa.Column('actor_role', sa.String(length=20), nullable=True),
    sa.Column('request_id', sa.String(length=128), nullable=True),
    sa.Column('occurred_at', crm_common.types.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('customer_history', schema=None) as batch_op:
        batch_op.create_index('ix_customer_history_customer', ['customer_id', 'id'], unique=False)

    op.create_table('customer_identifiers',
    sa.Column('customer_id', sa.String(length=36), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('value', sa.String(length=254), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('customer_id', 'kind', 'value')
    )
    with op.batch_alter_table('customer_identifiers', schema=None) as batch_op:
        batch_op.create_index('ix_customer_identifiers_lookup', ['kind', 'value'], unique=False)

    op.create_table('followups',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('customer_id', sa.String(length=36), nullable=False),
    sa.Column('type', sa.String(length=10), nullable=False),
    sa.Column('occurred_at', crm_common.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('outcome', sa.Text(), nullable=True),
    sa.Column('next_followup_at', crm_common.types.UtcDateTime(timezone=True), nullable=True),
    sa.Column('owner_id', sa.String(length=36), nullable=True),
    sa.Column('owner_team_id', sa.String(length=64), nullable=True),
    sa.Column('closed_at', crm_common.types.UtcDateTime(timezone=True), nullable=True),
    sa.Column('closed_by_followup_id', sa.String(length=36), nullable=True),
    sa.Column('created_by', sa.String(length=36), nullable=True),
    sa.Column('created_at', crm_common.types.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('followups', schema=None) as batch_op:
        batch_op.create_index('ix_followups_customer', ['customer_id', 'occurred_at'], unique=False)
        batch_op.create_index('ix_followups_due', ['owner_id', 'next_followup_at'], unique=False)

    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('company', JSON_DOCUMENT, nullable=False, server_default='{}'))
        batch_op.add_column(sa.Column('contact', JSON_DOCUMENT, nullable=False, server_default='{}'))
        batch_op.add_column(sa.Column('lifecycle_dates', JSON_DOCUMENT, nullable=False, server_default='{}'))
        batch_op.add_column(sa.Column('custom_fields', JSON_DOCUMENT, nullable=False, server_default='{}'))
        batch_op.add_column(sa.Column('external_id', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('search_text', sa.Text(), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('dedupe_key', sa.String(length=420), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('next_followup_at', crm_common.types.UtcDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('merged_into_id', sa.String(length=36), nullable=True))
        batch_op.create_index('ix_customers_dedupe_key', ['dedupe_key'], unique=False)
        batch_op.create_index('ix_customers_name', ['name'], unique=False)
        batch_op.create_index('ix_customers_owner_followup', ['owner_id', 'next_followup_at'], unique=False)
        batch_op.create_index('ix_customers_updated', ['updated_at'], unique=False)
        batch_op.create_unique_constraint('uq_customers_external_id', ['external_id'])

    _move_email_and_phone_into_contact()

    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_column('phone')
        batch_op.drop_column('email')

    if op.get_bind().dialect.name == 'postgresql':
        # Substring search (ILIKE '%term%') over 100k+ customers uses this
        # trigram index; pg_trgm is a trusted extension, so the database owner
        # may create it.
        op.execute('CREATE EXTENSION IF NOT EXISTS pg_trgm')
        op.execute('CREATE INDEX ix_customers_search_trgm ON customers USING gin (search_text gin_trgm_ops)')



def _move_email_and_phone_into_contact():
    customers = sa.table('customers', sa.column('id', sa.String), sa.column('name', sa.String),
                         sa.column('email', sa.String), sa.column('phone', sa.String),
                         sa.column('contact', sa.JSON), sa.column('search_text', sa.Text),
                         sa.column('dedupe_key', sa.String))
    bind = op.get_bind()
    for row in bind.execute(sa.select(customers.c.id, customers.c.name, customers.c.email, customers.c.phone)).all():
        contact = {'phones': [row.phone] if row.phone else [], 'emails': [row.email] if row.email else [],
                   'address': {}}
        # The same folding as customers.search (inlined: a migration must not
        # change when that code does).
        folded = ''.join(c for c in unicodedata.normalize('NFKD', row.name.casefold())
                         if not unicodedata.combining(c))
        bind.execute(customers.update().where(customers.c.id == row.id).values(
            contact=contact, search_text=folded, dedupe_key=' '.join(folded.split()) + '|'))


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP INDEX IF EXISTS ix_customers_search_trgm')
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email', sa.VARCHAR(length=254), nullable=True))
        batch_op.add_column(sa.Column('phone', sa.VARCHAR(length=32), nullable=True))
        batch_op.drop_constraint('uq_customers_external_id', type_='unique')
        batch_op.drop_index('ix_customers_updated')
        batch_op.drop_index('ix_customers_owner_followup')
        batch_op.drop_index('ix_customers_name')
        batch_op.drop_index('ix_customers_dedupe_key')
        batch_op.drop_column('merged_into_id')
        batch_op.drop_column('next_followup_at')
        batch_op.drop_column('dedupe_key')
        batch_op.drop_column('search_text')
        batch_op.drop_column('external_id')
        batch_op.drop_column('custom_fields')
        batch_op.drop_column('lifecycle_dates')
        batch_op.drop_column('contact')
        batch_op.drop_column('company')

    with op.batch_alter_table('followups', schema=None) as batch_op:
        batch_op.drop_index('ix_followups_due')
        batch_op.drop_index('ix_followups_customer')

    op.drop_table('followups')
    with op.batch_alter_table('customer_identifiers', schema=None) as batch_op:
        batch_op.drop_index('ix_customer_identifiers_lookup')

    op.drop_table('customer_identifiers')
    with op.batch_alter_table('customer_history', schema=None) as batch_op:
        batch_op.drop_index('ix_customer_history_customer')

    op.drop_table('customer_history')
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.drop_index('ix_contacts_customer')

    op.drop_table('contacts')
    with op.batch_alter_table('import_jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_import_jobs_status')

    op.drop_table('import_jobs')
    op.drop_table('customer_views')
    op.drop_table('customer_field_definitions')
