"""Keeping a local copy of another service's records from its events.

Events arrive at least once and in any order (each event type has its own
queue). The record's ``version`` decides: a row only ever moves to a newer
version, and an event that overtakes the create inserts the row (the late
create is then ignored as older).
"""
from sqlalchemy import select, update


def upsert_if_newer(session, model, key_column, key, values):
    """Write ``values`` (which include ``version``) for ``key`` unless we hold that version or newer.

    Returns True if the row changed. One conditional UPDATE rather than
    read-then-write, so two workers applying v2 and v3 concurrently cannot
    leave v2 behind (PostgreSQL re-checks the WHERE after waiting for the
    other's row lock; SQLite serialises writers). Two concurrent first
    inserts collide on the primary key: the loser's handler fails, is retried
    and then takes the UPDATE path.
    """
    result = session.execute(
        update(model)
        .where(key_column == key, model.version < values["version"])
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


def upsert_many_if_newer(session, model, key_column, rows):
    """``upsert_if_newer`` for a batch: each row (a dict with the key and ``version``) is inserted,
    or replaces the stored one if newer, in one INSERT ... ON CONFLICT statement.

    For batch events (an import's thousands of customers): a statement per row
    would cost the consumer more than the producer spent on the batch.
    Returns how many rows were inserted or changed.
    """
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - we ship PostgreSQL and SQLite
        raise NotImplementedError(f"no batch upsert for {dialect}")
    # The newest version of each key in the batch: one statement may not touch a row twice.
    newest = {}
    for row in rows:
        key = row[key_column.key]
        if key not in newest or newest[key]["version"] < row["version"]:
            newest[key] = row
    statement = insert(model).values(list(newest.values()))
    table = model.__table__
    statement = statement.on_conflict_do_update(
        index_elements=[key_column.key],
        set_={column: statement.excluded[column] for column in rows[0] if column != key_column.key},
        where=table.c.version < statement.excluded.version,
    )
    return session.execute(statement.execution_options(synchronize_session=False)).rowcount
