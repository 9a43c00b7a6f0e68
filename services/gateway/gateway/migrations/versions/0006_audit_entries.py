"""audit entries, which the database refuses to update or delete

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa

import crm_common.types


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

REFUSAL = "audit entries cannot be changed or deleted"


def upgrade():
    op.create_table('audit_entries',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('occurred_at', crm_common.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('service', sa.String(length=40), nullable=False),
    sa.Column('actor_id', sa.String(length=64), nullable=True),
    sa.Column('actor_role', sa.String(length=20), nullable=True),
    sa.Column('api_key_id', sa.String(length=64), nullable=True),
    sa.Column('client_ip', sa.String(length=64), nullable=True),
    sa.Column('request_id', sa.String(length=64), nullable=True),
    sa.Column('entity_type', sa.String(length=60), nullable=False),
    sa.Column('entity_id', sa.String(length=64), nullable=True),
    sa.Column('action', sa.String(length=100), nullable=False),
    sa.Column('outcome', sa.String(length=10), nullable=False),
    sa.Column('changes', sa.JSON(), nullable=True),
    sa.Column('detail', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.create_index('ix_audit_entries_occurred_at_id', ['occurred_at', 'id'], unique=False)
        batch_op.create_index('ix_audit_entries_actor_id', ['actor_id', 'occurred_at'], unique=False)
        batch_op.create_index('ix_audit_entries_entity', ['entity_type', 'entity_id', 'occurred_at'], unique=False)
        batch_op.create_index('ix_audit_entries_action', ['action', 'occurred_at'], unique=False)

    # The trail is append-only, enforced by the database itself: not even a
    # bug or a hand-written statement through the application's account can
    # rewrite history.
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(f"""
            CREATE FUNCTION audit_entries_refuse_change() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION '{REFUSAL}' USING ERRCODE = 'insufficient_privilege';
            END;
            $$ LANGUAGE plpgsql
        """)
        op.execute("""
            CREATE TRIGGER audit_entries_immutable
            BEFORE UPDATE OR DELETE ON audit_entries
            FOR EACH ROW EXECUTE FUNCTION audit_entries_refuse_change()
        """)
        # TRUNCATE skips row triggers: refuse it too.
        op.execute("""
            CREATE TRIGGER audit_entries_no_truncate
            BEFORE TRUNCATE ON audit_entries
            FOR EACH STATEMENT EXECUTE FUNCTION audit_entries_refuse_change()
        """)
    else:
        for verb in ('UPDATE', 'DELETE'):
            op.execute(f"""
                CREATE TRIGGER audit_entries_no_{verb.lower()}
                BEFORE {verb} ON audit_entries
                BEGIN
                    SELECT RAISE(ABORT, '{REFUSAL}');
                END
            """)


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP TRIGGER IF EXISTS audit_entries_no_truncate ON audit_entries")
        op.execute("DROP TRIGGER IF EXISTS audit_entries_immutable ON audit_entries")
        op.execute("DROP FUNCTION IF EXISTS audit_entries_refuse_change()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_entries_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_entries_no_delete")
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_entries_action')
        batch_op.drop_index('ix_audit_entries_entity')
        batch_op.drop_index('ix_audit_entries_actor_id')
        batch_op.drop_index('ix_audit_entries_occurred_at_id')

    op.drop_table('audit_entries')
