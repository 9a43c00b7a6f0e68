"""Key rotation inside one service: what its ``rotate_data_keys`` and ``data_key_usage`` RPCs do.

Every service holds encrypted columns (crm_common.crypto) in its own
database, at least the outbox payload. Rotating keys is an operator's job
(``crmctl``, crm_common.crmctl) in three steps: a new key becomes current in
the key file, every service re-encrypts what it holds under it
(``DataKeyJobs.rotate``), and the old key is removed once every service
reports no value left under it (``DataKeyJobs.usage``).

Plain Python over a session factory; nothing here knows about nameko (the
dependency provider that builds a ``DataKeyJobs`` per worker is in
crm_common.ops).
"""
from sqlalchemy import Text, column as sa_column, func, inspect, literal, select, table as sa_table, type_coerce, update

from crm_common import crypto
from crm_common.audit import record_audit
from crm_common.errors import Forbidden

ROTATED_ACTION = "keys.rotated"
ENTITY_TYPE = "data_keys"
# Counted under this name in ``usage``: values written before encryption (plain text).
UNENCRYPTED = "unencrypted"
# ... and under this one, values sealed under a key id the keyring does not hold.
UNKNOWN = "unknown"


class DataKeyJobs:
    """The data-key jobs of one service over its database: admins and the system only."""

    def __init__(self, session_factory, metadata_list, context, service_name, after_commit=None):
        self.session_factory = session_factory
        self.metadata_list = list(metadata_list)
        self.context = context
        self.service_name = service_name
        self.after_commit = after_commit

    def _require_admin(self):
        if not self.context.is_admin:
            raise Forbidden("Only admins and the system manage the data keys.")

    def rotate(self):
        """Re-encrypt every value not under the current key; what was done and what is left.

        The key file is re-read first: the operator has just made a new key
        current there, and this process must not wait for its periodic look
        (nor keep writing under the old key while it re-encrypts).
        """
        self._require_admin()
        crypto.reload_keyring()
        reencrypted = crypto.reencrypt_columns(self.session_factory, self.metadata_list)
        remaining = crypto.count_stale_values(self.session_factory, self.metadata_list)
        kid = crypto.current_key_id()
        with self.session_factory() as session:
            record_audit(session, self.context, self.service_name, ROTATED_ACTION, ENTITY_TYPE, kid,
                         detail={"reencrypted": reencrypted, "remaining": remaining})
            session.commit()
        if self.after_commit is not None:
            self.after_commit()  # the audit entry leaves through the outbox now, not at the next poll
        return {"service": self.service_name, "current_key_id": kid,
                "reencrypted": reencrypted, "remaining": remaining}

    def usage(self):
        """How many values each key id seals, per column: what ``crmctl keys retire`` checks.

        {"service", "current_key_id", "keys": {kid: total}, "columns": {"table.column": {kid: n}}},
        plain-text values counted under "unencrypted", values under a key id missing from the keyring
        under "unknown". Counted on the stored text, nothing decrypted.
        """
        self._require_admin()
        ring = crypto.reload_keyring()
        columns, totals = {}, {}
        with self.session_factory() as session:
            connection_inspector = inspect(session.connection())
            for table, column in crypto.encrypted_columns(self.metadata_list):
                if not connection_inspector.has_table(table.name, schema=table.schema):
                    continue
                counts = _count_by_key(session, table, column, sorted(ring.keys))
                columns[f"{table.name}.{column.name}"] = counts
                for kid, count in counts.items():
                    totals[kid] = totals.get(kid, 0) + count
        return {"service": self.service_name, "current_key_id": ring.current, "keys": totals,
                "columns": columns}


def _count_by_key(session, table, column, key_ids):
    """{kid: values} of one column for the keyring's key ids, plus "unencrypted" (plain text) and
    "unknown" (a key id the keyring no longer has) when there are any. Counted on the stored text."""
    raw = type_coerce(column, Text)
    present = raw.isnot(None)
    counts = {}
    for kid in key_ids:
        prefix = f"{crypto.PREFIX}:{kid}:"
        # substr equality rather than LIKE: a key id may hold "_", a LIKE wildcard.
        count = session.execute(select(func.count()).select_from(table).where(
            present, func.substr(raw, 1, len(prefix)) == literal(prefix, Text))).scalar_one()
        if count:
            counts[kid] = count
    tokens = session.execute(select(func.count()).select_from(table).where(
        present, func.substr(raw, 1, len(crypto.PREFIX) + 1) == literal(crypto.PREFIX + ":", Text))).scalar_one()
    total = session.execute(select(func.count()).select_from(table).where(present)).scalar_one()
    unknown = tokens - sum(counts.values())
    if unknown:
        counts[UNKNOWN] = unknown
    if total - tokens:
        counts[UNENCRYPTED] = total - tokens
    return counts


# --- migrations that make an existing column encrypted --------------------------------

def _lightweight(table_name, names):
    # Untyped columns: the values go in and out exactly as stored.
    return sa_table(table_name, *[sa_column(name) for name in names])


def seal_column(connection, table_name, primary_key, column_name, batch_size=500):
    """Encrypt, in place, every plain-text value of one column (an alembic data migration's upgrade);
    how many. Values already encrypted are left alone, so running it again changes nothing."""
    return _rewrite(connection, table_name, primary_key, column_name, batch_size,
                    wanted=lambda raw: ~raw.like(crypto.PREFIX + ":%"), convert=crypto.encrypt)


def unseal_column(connection, table_name, primary_key, column_name, batch_size=500):
    """Decrypt, in place, every encrypted value of one column (the same migration's downgrade); how many.
    Needs every key the values are under: a value that cannot be decrypted stops the downgrade."""
    return _rewrite(connection, table_name, primary_key, column_name, batch_size,
                    wanted=lambda raw: raw.like(crypto.PREFIX + ":%"), convert=crypto.decrypt)


def _rewrite(connection, table_name, primary_key, column_name, batch_size, wanted, convert):
    table = _lightweight(table_name, [*primary_key, column_name])
    pk = [table.c[name] for name in primary_key]
    raw = table.c[column_name]
    done = 0
    while True:
        # Each rewritten row stops matching ``wanted``: the next batch is the next rows.
        rows = connection.execute(
            select(*pk, raw).where(raw.isnot(None), wanted(raw)).limit(batch_size)).all()
        for row in rows:
            keys, old = row[:len(pk)], row[len(pk)]
            connection.execute(update(table).where(*[c == v for c, v in zip(pk, keys)])
                               .values({column_name: convert(old)}))
        done += len(rows)
        if len(rows) < batch_size:
            return done
