"""Keeping a local copy of another service's records from its events.

Events arrive at least once and in any order (each event type has its own
queue). The record's ``version`` decides: a row only ever moves to a newer
version, and an event that overtakes the create inserts the row (the late
create is then ignored as older).
"""
from functools import lru_cache

from sqlalchemy import select, update


def upsert_if_newer(session, model, key_column, key, values, at_least_as_new=False):
    """Write ``values`` (which include ``version``) for ``key`` unless we hold that version or newer.

    ``at_least_as_new=True`` also overwrites a row at the same version: for a
    rebuild from the source, whose copy of a version is authoritative (after a
    schema change the stored row at that version may lack the new columns).

    Returns True if the row changed. One conditional UPDATE rather than
    read-then-write, so two workers applying v2 and v3 concurrently cannot
    leave v2 behind (PostgreSQL re-checks the WHERE after waiting for the
    other's row lock; SQLite serialises writers). Two concurrent first
    inserts collide on the primary key: the loser's handler fails, is retried
    and then takes the UPDATE path.
    """
    result = session.execute(
        update(model)
        .where(key_column == key, _older(model.version, values["version"], at_least_as_new))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount:
        return True
    if session.execute(select(key_column).where(key_column == key)).first() is not None:
        return False
    session.add(model(**{key_column.key: key}, **values))
    session.flush()
    return True


def upsert_many_if_newer(session, model, key_column, rows, at_least_as_new=False):
    """``upsert_if_newer`` for a batch: each row (a dict with the key and ``version``; every row
    with the same keys) is inserted, or replaces the stored one if newer, by one
    INSERT ... ON CONFLICT statement executed for all the rows.

    For batch events (an import's thousands of customers): a statement per row
    would cost the consumer more than the producer spent on the batch.
    Returns how many rows were inserted or changed. ``at_least_as_new`` as
    for ``upsert_if_newer``.
    """
    if not rows:
        return 0
    # The newest version of each key in the batch: one statement may not touch a row twice.
    newest = {}
    for row in rows:
        key = row[key_column.key]
        if key not in newest or newest[key]["version"] < row["version"]:
            newest[key] = row
    statement = _upsert_statement(_dialect(session), model.__table__, key_column.key, tuple(rows[0]),
                                  at_least_as_new)
    return _written(session, statement, list(newest.values()))


def insert_many(session, model, rows, key_columns, overwrite=False, chunk=500):
    """Insert ``rows`` (dicts with the same keys) of a table keyed by ``key_columns``.

    A row whose key is already stored is left alone (immutable records written
    twice: follow-ups, order lines), or with ``overwrite`` replaced (a rebuild
    refreshing what it read). At most ``chunk`` rows go to one execution.
    Returns how many rows were inserted or replaced.
    """
    if not rows:
        return 0
    statement = _insert_statement(_dialect(session), model.__table__, tuple(key_columns), tuple(rows[0]), overwrite)
    return sum(_written(session, statement, rows[start:start + chunk]) for start in range(0, len(rows), chunk))


# Why the statements below are compiled here, once per database, table and column list, and then
# executed for a list of rows:
# - a multi-row VALUES statement is a different statement for every number of rows, and
# - SQLAlchemy (2.0) never caches an INSERT ... ON CONFLICT: the dialects' Insert constructs opt
#   out of its statement cache (inherit_cache = False), so even a statement of the same shape was
#   compiled again on every call (py-spy on a replay: half of its time in the compiler).
# A Compiled executed with many rows still goes out as multi-row VALUES pages ("insertmanyvalues"),
# within each database's parameter limit, with every column type's bind processing.
# rowcount is not reliable for such an execution: the rows written are counted from RETURNING
# (a conflict left alone returns no row; an insert or an update returns one).

def _written(session, statement, rows):
    session.flush()  # pending ORM objects first, as session.execute would
    connection = session.connection()
    compiled = _compiled(connection.dialect, statement, tuple(rows[0]))
    return len(connection.execute(compiled, rows).all())


@lru_cache(maxsize=256)
def _compiled(dialect, statement, columns):
    return statement.compile(dialect=dialect, column_keys=list(columns), for_executemany=True)


@lru_cache(maxsize=256)
def _upsert_statement(dialect, table, key, columns, at_least_as_new):
    statement = _insert_of(dialect)(table)
    statement = statement.on_conflict_do_update(
        index_elements=[key],
        set_={column: statement.excluded[column] for column in columns if column != key},
        where=_older(table.c.version, statement.excluded.version, at_least_as_new),
    )
    return statement.returning(table.c[key])


@lru_cache(maxsize=256)
def _insert_statement(dialect, table, key_columns, columns, overwrite):
    statement = _insert_of(dialect)(table)
    if overwrite:
        statement = statement.on_conflict_do_update(
            index_elements=list(key_columns),
            set_={column: statement.excluded[column] for column in columns if column not in key_columns})
    else:
        statement = statement.on_conflict_do_nothing(index_elements=list(key_columns))
    return statement.returning(table.c[key_columns[0]])


def _dialect(session):
    return session.get_bind().dialect.name


def dialect_insert(session):
    """The INSERT construct with ON CONFLICT of the session's database."""
    return _insert_of(_dialect(session))


def _insert_of(dialect):
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - we ship PostgreSQL and SQLite
        raise NotImplementedError(f"no batch upsert for {dialect}")
    return insert


def _older(stored, incoming, or_equal):
    return stored <= incoming if or_equal else stored < incoming
