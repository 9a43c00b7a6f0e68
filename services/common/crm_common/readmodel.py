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
