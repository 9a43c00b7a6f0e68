"""count_after_commit: a business counter moves only when its transaction commits."""
import pytest
from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import Column, Integer, MetaData, Table, insert

from crm_common.db import make_engine, make_session_factory
from crm_common.metrics import call_after_commit, count_after_commit

metadata = MetaData()
things = Table("things", metadata, Column("id", Integer, primary_key=True))


@pytest.fixture
def session():
    engine = make_engine("sqlite://")
    metadata.create_all(engine)
    with make_session_factory(engine)() as session:
        yield session


@pytest.fixture
def counter():
    return Counter("crm_things_made_total", "test", ["kind"], registry=CollectorRegistry())


def value(counter, kind="a"):
    return counter.labels(kind)._value.get()


def test_counted_on_commit_not_before(session, counter):
    session.execute(insert(things))
    count_after_commit(session, counter.labels("a"))
    count_after_commit(session, counter.labels("a"), 2)
    assert value(counter) == 0
    session.commit()
    assert value(counter) == 3
    session.commit()  # nothing pending any more
    assert value(counter) == 3


def test_rollback_drops_the_count(session, counter):
    session.execute(insert(things))
    count_after_commit(session, counter.labels("a"))
    session.rollback()
    session.commit()
    assert value(counter) == 0


def test_savepoint_rolled_back_drops_only_its_own_counts(session, counter):
    count_after_commit(session, counter.labels("a"))
    kept = session.begin_nested()
    count_after_commit(session, counter.labels("a"), 10)
    kept.commit()  # released savepoint: still waits for the outer commit
    assert value(counter) == 0
    dropped = session.begin_nested()
    count_after_commit(session, counter.labels("a"), 100)
    dropped.rollback()
    session.commit()
    assert value(counter) == 11


def test_closed_without_commit_is_not_counted_later(session, counter):
    count_after_commit(session, counter.labels("a"))
    session.close()
    session.execute(insert(things))
    session.commit()
    assert value(counter) == 0


def test_call_after_commit_computes_its_value_at_commit(session):
    seen = []
    call_after_commit(session, lambda: seen.append("observed"))
    session.execute(insert(things))
    assert seen == []
    session.commit()
    assert seen == ["observed"]
    call_after_commit(session, lambda: seen.append("rolled back"))
    session.rollback()
    session.commit()
    assert seen == ["observed"]
