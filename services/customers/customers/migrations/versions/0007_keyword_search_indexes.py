"""keyword search indexes: character pairs on PostgreSQL, FTS5 trigrams on SQLite

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

Keyword search (customers.search) at 100,000+ customers must not read every
customer.

PostgreSQL: 0002's pg_trgm GIN index serves words with 3+ letters in a row.
Chinese words are often 1-2 characters, which have no trigram; this adds a
GIN index over every customer's characters and pairs of adjacent characters
(customer_search_grams), which answers those. Both need pg_trgm / GIN only,
no superuser at run time. What a DBA must grant for a deployment that does
not migrate as a superuser: pg_trgm is a trusted extension (PostgreSQL 13+),
so the role that runs migrations needs CREATE on the database (or the DBA
runs ``CREATE EXTENSION pg_trgm`` in it once beforehand; then the IF NOT
EXISTS below does nothing); it must own the customers table to index it and
needs CREATE on the public schema for the function (not granted to ordinary
roles by default since PostgreSQL 15).

SQLite: an FTS5 table with the trigram tokenizer (SQLite 3.34+) mirrors
search_text, kept in step by triggers; the DDL is inlined from
customers.models.SQLITE_SEARCH_DDL, as a migration must not change when that
code does. Triggers disappear when a batch migration copies the customers
table: a later migration that batch-alters customers must create them again.
"""
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

# Every character and pair of adjacent characters, none with a space (a query's words have
# none). IMMUTABLE: an index may be built on it; the same text always gives the same grams.
PG_GRAMS_FUNCTION = """
CREATE OR REPLACE FUNCTION customer_search_grams(text) RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(DISTINCT gram), '{}')
    FROM generate_series(1, char_length($1)) AS i,
         LATERAL (VALUES (substr($1, i, 1)), (substr($1, i, 2))) AS grams (gram)
    WHERE gram NOT LIKE '% %'
$$
"""

SQLITE_SEARCH_DDL = (
    "CREATE TABLE customer_search_rows ("
    "id INTEGER PRIMARY KEY, customer_id VARCHAR(36) NOT NULL UNIQUE)",
    "CREATE VIRTUAL TABLE customer_search USING fts5(search_text, tokenize = 'trigram case_sensitive 1')",
    "CREATE TRIGGER customer_search_insert AFTER INSERT ON customers BEGIN "
    "INSERT INTO customer_search_rows (customer_id) VALUES (new.id); "
    "INSERT INTO customer_search (rowid, search_text) "
    "VALUES ((SELECT id FROM customer_search_rows WHERE customer_id = new.id), new.search_text); "
    "END",
    "CREATE TRIGGER customer_search_update AFTER UPDATE OF id, search_text ON customers BEGIN "
    "UPDATE customer_search_rows SET customer_id = new.id WHERE customer_id = old.id; "
    "UPDATE customer_search SET search_text = new.search_text "
    "WHERE rowid = (SELECT id FROM customer_search_rows WHERE customer_id = new.id); "
    "END",
    "CREATE TRIGGER customer_search_delete AFTER DELETE ON customers BEGIN "
    "DELETE FROM customer_search WHERE rowid = (SELECT id FROM customer_search_rows WHERE customer_id = old.id); "
    "DELETE FROM customer_search_rows WHERE customer_id = old.id; "
    "END",
)


def upgrade():
    dialect = op.get_bind().dialect.name
    if dialect == 'postgresql':
        # 0002 made it; again here so this index stands on its own.
        op.execute('CREATE EXTENSION IF NOT EXISTS pg_trgm')
        op.execute(PG_GRAMS_FUNCTION)
        op.execute('CREATE INDEX ix_customers_search_grams ON customers USING gin (customer_search_grams(search_text))')
        # The planner chooses between these indexes and the created_at order by the statistics;
        # a table just filled by an import has none until autovacuum gets to it.
        op.execute('ANALYZE customers')
    elif dialect == 'sqlite':
        for statement in SQLITE_SEARCH_DDL:
            op.execute(statement)
        op.execute('INSERT INTO customer_search_rows (customer_id) SELECT id FROM customers')
        op.execute('INSERT INTO customer_search (rowid, search_text) SELECT rows.id, customers.search_text '
                   'FROM customers JOIN customer_search_rows AS rows ON rows.customer_id = customers.id')


def downgrade():
    dialect = op.get_bind().dialect.name
    if dialect == 'postgresql':
        op.execute('DROP INDEX IF EXISTS ix_customers_search_grams')
        op.execute('DROP FUNCTION IF EXISTS customer_search_grams(text)')
    elif dialect == 'sqlite':
        for trigger in ('customer_search_insert', 'customer_search_update', 'customer_search_delete'):
            op.execute(f'DROP TRIGGER IF EXISTS {trigger}')
        op.execute('DROP TABLE IF EXISTS customer_search')
        op.execute('DROP TABLE IF EXISTS customer_search_rows')
