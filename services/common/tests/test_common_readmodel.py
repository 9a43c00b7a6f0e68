"""crm_common.readmodel: replicas only move to newer versions, whatever the arrival order."""
import itertools

import pytest
from sqlalchemy import Integer, String, event, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from crm_common.db import make_engine, make_session_factory
from crm_common.readmodel import insert_many, upsert_if_newer, upsert_many_if_newer
from crm_common.testing import memory_session, postgres_database


class Base(DeclarativeBase):
    pass


class Replica(Base):
    __tablename__ = "replicas"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    version: Mapped[int] = mapped_column(Integer)


def current(session, key="c1"):
    row = session.execute(select(Replica).where(Replica.id == key)).scalar_one_or_none()
    return (row.name, row.version) if row else None


def apply(session, version, key="c1"):
    changed = upsert_if_newer(session, Replica, Replica.id, key,
                              {"name": f"name v{version}", "version": version})
    session.commit()
    return changed


def test_create_then_updates_in_order():
    session = memory_session(Base.metadata)
    assert apply(session, 1) is True
    assert current(session) == ("name v1", 1)
    assert apply(session, 2) is True
    assert current(session) == ("name v2", 2)


def test_redelivered_or_older_versions_change_nothing():
    session = memory_session(Base.metadata)
    apply(session, 3)
    assert apply(session, 3) is False
    assert apply(session, 1) is False
    assert current(session) == ("name v3", 3)


@pytest.mark.parametrize("order", list(itertools.permutations([1, 2, 3, 4])))
def test_any_arrival_order_ends_at_the_newest_version(order):
    session = memory_session(Base.metadata)
    for version in order:
        apply(session, version)
    assert current(session) == ("name v4", 4)


def test_keys_are_independent():
    session = memory_session(Base.metadata)
    apply(session, 5, key="a")
    assert apply(session, 1, key="b") is True
    assert current(session, "a") == ("name v5", 5)
    assert current(session, "b") == ("name v1", 1)


def batch_upsert_cases(session):
    apply(session, 3, key="newer-held")
    apply(session, 1, key="older-held")
    changed = upsert_many_if_newer(session, Replica, Replica.id, [
        {"id": "new", "name": "name v1", "version": 1},
        {"id": "newer-held", "name": "name v2", "version": 2},
        {"id": "older-held", "name": "name v2", "version": 2},
        {"id": "twice", "name": "name v1", "version": 1},
        {"id": "twice", "name": "name v4", "version": 4},
    ])
    session.commit()
    assert changed == 3
    assert current(session, "new") == ("name v1", 1)
    assert current(session, "newer-held") == ("name v3", 3)  # an older version never wins
    assert current(session, "older-held") == ("name v2", 2)
    assert current(session, "twice") == ("name v4", 4)  # the newest of the batch
    assert upsert_many_if_newer(session, Replica, Replica.id, [{"id": "new", "name": "name v1", "version": 1}]) == 0
    assert upsert_many_if_newer(session, Replica, Replica.id, []) == 0


def at_least_as_new_cases(session):
    apply(session, 2, key="a")
    apply(session, 2, key="b")
    # A rebuild re-reads version 2 with a column filled differently: its copy wins ...
    assert upsert_if_newer(session, Replica, Replica.id, "a", {"name": "rebuilt", "version": 2},
                           at_least_as_new=True) is True
    assert upsert_many_if_newer(session, Replica, Replica.id, [{"id": "b", "name": "rebuilt", "version": 2}],
                                at_least_as_new=True) == 1
    # ... but never an older version.
    assert upsert_many_if_newer(session, Replica, Replica.id, [{"id": "b", "name": "old", "version": 1}],
                                at_least_as_new=True) == 0
    session.commit()
    assert current(session, "a") == ("rebuilt", 2)
    assert current(session, "b") == ("rebuilt", 2)


def insert_many_cases(session):
    assert insert_many(session, Replica, [{"id": "x", "name": "first", "version": 1}], ["id"]) == 1
    # Written twice: the stored row stays, unless told to overwrite it; chunks cover long lists.
    rows = [{"id": "x", "name": "again", "version": 1}] + [
        {"id": f"n{i}", "name": "new", "version": 1} for i in range(7)]
    assert insert_many(session, Replica, rows, ["id"], chunk=3) == 7  # the new ones only
    assert current(session, "x") == ("first", 1)
    assert current(session, "n6") == ("new", 1)
    assert insert_many(session, Replica, rows[:1], ["id"], overwrite=True) == 1
    session.commit()
    assert current(session, "x") == ("again", 1)


def test_at_least_as_new_overwrites_the_same_version_on_sqlite():
    at_least_as_new_cases(memory_session(Base.metadata))


def test_insert_many_keeps_or_overwrites_on_sqlite():
    insert_many_cases(memory_session(Base.metadata))


def test_at_least_as_new_and_insert_many_on_postgresql():
    with postgres_database("readmodel_rebuild") as url:
        engine = make_engine(url)
        Base.metadata.create_all(engine)
        session = make_session_factory(engine)()
        try:
            at_least_as_new_cases(session)
            insert_many_cases(session)
        finally:
            session.close()
            engine.dispose()


def test_a_batch_upserts_only_newer_versions_on_sqlite():
    batch_upsert_cases(memory_session(Base.metadata))


def test_a_batch_upserts_only_newer_versions_on_postgresql():
    with postgres_database("readmodel") as url:
        engine = make_engine(url)
        Base.metadata.create_all(engine)
        session = make_session_factory(engine)()
        try:
            batch_upsert_cases(session)
        finally:
            session.close()
            engine.dispose()


def test_batches_of_any_size_compile_one_statement_each():
    """A multi-row VALUES statement per batch made SQLAlchemy compile a new statement on every call
    (half of a replay's time); a cached statement executed for a list of rows compiles once."""
    session = memory_session(Base.metadata)
    compiled = []  # the compiled form of every execution (kept: equal ids then mean one object)
    event.listen(session.get_bind(), "before_cursor_execute",
                 lambda conn, cursor, statement, parameters, context, executemany: compiled.append(context.compiled))
    for size in range(1, 12):
        rows = [{"id": f"s{size}-{n}", "name": "n", "version": 1} for n in range(size)]
        assert insert_many(session, Replica, rows, ["id"]) == size
        assert upsert_many_if_newer(session, Replica, Replica.id, [dict(row, version=2) for row in rows]) == size
    assert len({id(statement) for statement in compiled}) == 2
