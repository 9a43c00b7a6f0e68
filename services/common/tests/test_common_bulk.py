"""insert_rows stores exactly what an executemany INSERT stores, by COPY on PostgreSQL."""
from datetime import datetime, timezone

import pytest
from sqlalchemy import (
    JSON, Boolean, Column, Integer, MetaData, Numeric, String, Table, Text, insert, select,
)
from sqlalchemy.dialects.postgresql import JSONB

from crm_common import bulk
from crm_common.bulk import insert_rows
from crm_common.db import make_engine, make_session_factory
from crm_common.types import UtcDateTime

metadata = MetaData()


def things(name):
    return Table(
        name, metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("name", String(50)),
        Column("notes", Text),
        Column("doc", JSON().with_variant(JSONB(), "postgresql")),
        Column("flag", Boolean),
        Column("amount", Numeric(18, 2)),
        Column("count", Integer),
        Column("at", UtcDateTime),
    )


copied, inserted = things("things_copied"), things("things_inserted")

AWKWARD = ["plain", "tab\there", "new\nline", "back\\slash \\N", "cr\rhere", "中文 Müller", "", " ", "\\."]


def rows(count):
    at = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)
    return [{
        "name": AWKWARD[n % len(AWKWARD)],
        "notes": None if n % 3 == 0 else f"line {n}\nsecond\t\\",
        "doc": {"k": AWKWARD[n % len(AWKWARD)], "n": n, "nested": {"list": [1, None, "x\ty"]}, "none": None},
        "flag": n % 2 == 0,
        "amount": "12.50" if n % 2 else None,
        "count": n,
        "at": at,
    } for n in range(count)]


def stored(session, table):
    return [dict(row._mapping) for row in session.execute(select(table).order_by(table.c.id))]


@pytest.fixture
def plain_psycopg2():
    """psycopg2 outside green mode, as in a process without eventlet (the import runner)."""
    from psycopg2.extensions import get_wait_callback, set_wait_callback

    callback = get_wait_callback()
    set_wait_callback(None)
    yield
    set_wait_callback(callback)


@pytest.fixture
def copies(monkeypatch):
    """Counts the COPYs insert_rows makes."""
    made = []
    real = bulk._copy_text
    monkeypatch.setattr(bulk, "_copy_text", lambda value: made.append(1) or real(value))
    return made


@pytest.mark.parametrize("count", [3, 120])
def test_copy_stores_what_insert_stores_on_postgresql(pg_url, plain_psycopg2, copies, count):
    engine = make_engine(pg_url)
    try:
        metadata.create_all(engine)
        session = make_session_factory(engine)()
        insert_rows(session, copied, rows(count))
        session.execute(insert(inserted), rows(count))
        session.commit()
        assert stored(session, copied) == stored(session, inserted)
        assert len(stored(session, copied)) == count
        assert bool(copies) == (count >= bulk.COPY_MIN_ROWS)
        session.close()
    finally:
        engine.dispose()


def test_copy_is_part_of_the_transaction(pg_url, plain_psycopg2, copies):
    engine = make_engine(pg_url)
    try:
        metadata.create_all(engine)
        session = make_session_factory(engine)()
        insert_rows(session, copied, rows(bulk.COPY_MIN_ROWS))
        assert copies
        session.rollback()
        assert stored(session, copied) == []
        session.close()
    finally:
        engine.dispose()


def test_other_databases_get_the_executemany(sqlite_url):
    engine = make_engine(sqlite_url)
    try:
        metadata.create_all(engine)
        session = make_session_factory(engine)()
        insert_rows(session, copied, rows(120))
        insert_rows(session, copied, [])
        session.commit()
        assert len(stored(session, copied)) == 120
        assert stored(session, copied)[1]["doc"]["nested"] == {"list": [1, None, "x\ty"]}
        session.close()
    finally:
        engine.dispose()


def test_green_psycopg2_gets_the_executemany(pg_url, copies):
    # nameko test applies eventlet's monkey patch: psycopg2 is in green mode here.
    engine = make_engine(pg_url)
    try:
        metadata.create_all(engine)
        session = make_session_factory(engine)()
        insert_rows(session, copied, rows(120))
        session.commit()
        assert len(stored(session, copied)) == 120 and not copies
        session.close()
    finally:
        engine.dispose()
