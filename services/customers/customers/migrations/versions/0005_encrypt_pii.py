"""personal data encrypted at rest

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29

Phones, emails, addresses and ID numbers (customers.contact, contacts.phones /
emails), the history of their changes, import files and reports, and the
events that carry customer snapshots (import_job_events, crm_outbox) are
stored encrypted (crm_common.crypto, the keys from CRM_DATA_KEYS or the key
file; never in the database). Their columns become TEXT holding
``enc1:<kid>:...`` tokens. customer_identifiers.value becomes the blind index
(keyed HMAC) of the phone or email, so exact lookup and duplicate detection
still match in SQL.

SQLite changes a column's type by copying the table. Dropping the old
``customers`` would cascade-delete every contact, tag, identifier and history
row with foreign keys on, so the copy runs with them off (outside a
transaction, as SQLite requires) and is checked with foreign_key_check after.
"""
import base64

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from crm_common.crypto import blind_index, decrypt, encrypt, is_encrypted

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
BATCH = 1000

# (table, primary key columns, column, nullable) of the JSON columns that become encrypted text
JSON_COLUMNS = [
    ('customers', ('id',), 'contact', False),
    ('contacts', ('id',), 'phones', False),
    ('contacts', ('id',), 'emails', False),
    ('customer_history', ('id',), 'changes', False),
    ('import_jobs', ('id',), 'report', True),
]
TEXT_COLUMNS = [
    ('import_job_events', ('id',), 'payload'),
    ('crm_outbox', ('id',), 'payload'),
]


def _seal(raw):
    """The stored value sealed as crm_common.crypto's column types would store it."""
    if raw is None or is_encrypted(raw):
        return None
    if isinstance(raw, (bytes, bytearray, memoryview)):  # EncryptedBytes: base64 inside the token
        return encrypt(base64.b64encode(bytes(raw)).decode('ascii'))
    return encrypt(raw)


def _rewrite(table, keys, column, convert):
    """Set ``column`` to ``convert(raw)`` for every row where that is not None, a batch at a time
    (read by primary key order, so a large table is never held in memory at once)."""
    bind = op.get_bind()
    (key,) = keys
    t = sa.table(table, sa.column(key), sa.column(column))
    statement = sa.update(t).where(t.c[key] == sa.bindparam('k')).values({column: sa.bindparam('v')})
    last = None
    while True:
        query = sa.select(t.c[key], t.c[column]).where(t.c[column].isnot(None)).order_by(t.c[key]).limit(BATCH)
        if last is not None:
            query = query.where(t.c[key] > last)
        rows = bind.execute(query).all()
        if not rows:
            return
        pending = [{'k': row[0], 'v': new} for row in rows if (new := convert(row[1])) is not None]
        if pending:
            bind.execute(statement, pending)
        last = rows[-1][0]


def _identifiers_to_blind_index():
    bind = op.get_bind()
    t = sa.table('customer_identifiers', sa.column('customer_id'), sa.column('kind'), sa.column('value'))
    rows = bind.execute(sa.select(t.c.customer_id, t.c.kind, t.c.value)).all()
    statement = sa.update(t).where(t.c.customer_id == sa.bindparam('k_customer_id'),
                                   t.c.kind == sa.bindparam('k_kind'),
                                   t.c.value == sa.bindparam('k_value')).values(value=sa.bindparam('v_new'))
    updates = [{'k_customer_id': customer_id, 'k_kind': kind, 'k_value': value,
                'v_new': blind_index(kind, value)}
               for customer_id, kind, value in rows if not _is_blind(value)]
    for start in range(0, len(updates), BATCH):
        bind.execute(statement, updates[start:start + BATCH])


def _is_blind(value):
    return len(value) == 64 and all(c in '0123456789abcdef' for c in value)


def _sqlite_copy_tables(alter):
    """Run ``alter`` (batch table copies) with foreign keys off, then check them and turn them on."""
    bind = op.get_bind()
    # PRAGMA foreign_keys is ignored inside a transaction: end the one the earlier steps opened.
    bind.commit()
    bind.exec_driver_sql('PRAGMA foreign_keys=OFF')
    try:
        alter()
        problems = bind.exec_driver_sql('PRAGMA foreign_key_check').all()
        if problems:
            raise RuntimeError(f'foreign keys broken by the table copy: {problems[:5]}')
        bind.commit()
    finally:
        bind.exec_driver_sql('PRAGMA foreign_keys=ON')


def upgrade():
    dialect = op.get_bind().dialect.name
    if dialect == 'sqlite':
        # Seal first: SQLite keeps the text in the old columns, and the copy's CAST(... AS TEXT)
        # would garble a BLOB (import files) but leaves text as it is.
        for table, keys, column, _ in JSON_COLUMNS:
            _rewrite(table, keys, column, _seal)
        _rewrite('import_jobs', ('id',), 'content', _seal)
        _sqlite_copy_tables(_alter_types_to_text)
    else:
        _alter_types_to_text()
        for table, keys, column, _ in JSON_COLUMNS:
            _rewrite(table, keys, column, _seal)
        # bytea became its base64 text, which is what EncryptedBytes seals.
        _rewrite('import_jobs', ('id',), 'content', _seal)
    for table, keys, column in TEXT_COLUMNS:
        _rewrite(table, keys, column, _seal)
    _identifiers_to_blind_index()


def _alter_types_to_text():
    postgres = op.get_bind().dialect.name == 'postgresql'
    for table in ('customers', 'contacts', 'customer_history', 'import_jobs'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for json_table, _, column, nullable in JSON_COLUMNS:
                if json_table != table:
                    continue
                extra = {'server_default': None} if (table, column) == ('customers', 'contact') else {}
                batch_op.alter_column(column, existing_type=JSON_DOCUMENT, type_=sa.Text(),
                                      existing_nullable=nullable,
                                      postgresql_using=f'{column}::text', **extra)
            if table == 'import_jobs':
                batch_op.alter_column('content', existing_type=sa.LargeBinary(), type_=sa.Text(),
                                      existing_nullable=True,
                                      postgresql_using="encode(content, 'base64')")
    if postgres:
        # encode() breaks base64 into lines of 76; the token holds it in one piece.
        op.execute("UPDATE import_jobs SET content = replace(content, E'\\n', '') WHERE content IS NOT NULL")


def _open(raw):
    return decrypt(raw) if is_encrypted(raw) else None


def downgrade():
    """Back to plain text (needs the keys). Identifiers are recomputed from the decrypted contacts."""
    bind = op.get_bind()
    dialect = bind.dialect.name
    for table, keys, column in TEXT_COLUMNS:
        _rewrite(table, keys, column, _open)
    for table, keys, column, _ in JSON_COLUMNS:
        _rewrite(table, keys, column, _open)
    # content: base64 text after decryption.
    _rewrite('import_jobs', ('id',), 'content', _open)

    def alter_back():
        for table in ('customers', 'contacts', 'customer_history', 'import_jobs'):
            with op.batch_alter_table(table, schema=None) as batch_op:
                for json_table, _, column, nullable in JSON_COLUMNS:
                    if json_table != table:
                        continue
                    extra = {'server_default': '{}'} if (table, column) == ('customers', 'contact') else {}
                    batch_op.alter_column(column, existing_type=sa.Text(), type_=JSON_DOCUMENT,
                                          existing_nullable=nullable,
                                          postgresql_using=f'{column}::jsonb', **extra)
                if table == 'import_jobs':
                    batch_op.alter_column('content', existing_type=sa.Text(), type_=sa.LargeBinary(),
                                          existing_nullable=True,
                                          postgresql_using="decode(content, 'base64')")

    if dialect == 'sqlite':
        _sqlite_copy_tables(alter_back)
        # The copy kept the base64 text; files are bytes again.
        _rewrite('import_jobs', ('id',), 'content',
                 lambda raw: base64.b64decode(raw))
    else:
        alter_back()
    # Identifiers: the plain normalised values again, from the contacts.
    import json
    customers = sa.table('customers', sa.column('id'), sa.column('contact'))
    identifiers = sa.table('customer_identifiers', sa.column('customer_id'), sa.column('kind'),
                           sa.column('value'))
    op.execute(sa.delete(identifiers))
    rows = []
    for customer_id, contact in bind.execute(sa.select(customers.c.id, customers.c.contact)).all():
        contact = json.loads(contact) if isinstance(contact, str) else (contact or {})
        rows += [{'customer_id': customer_id, 'kind': 'phone', 'value': v}
                 for v in dict.fromkeys(contact.get('phones') or ())]
        rows += [{'customer_id': customer_id, 'kind': 'email', 'value': v}
                 for v in dict.fromkeys(contact.get('emails') or ())]
    for start in range(0, len(rows), BATCH):
        bind.execute(sa.insert(identifiers), rows[start:start + BATCH])
