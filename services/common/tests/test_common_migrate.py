"""crm_common.migrate and crm_common.testing.schema_drift, with a tiny migrations
package (crm_common_testmigrations, beside this file)."""
import eventlet
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, inspect, select, text
from sqlalchemy.exc import OperationalError

import crm_common_testmigrations
from crm_common.db import make_engine
from crm_common.migrate import upgrade
from crm_common.testing import schema_drift
from crm_common.types import UtcDateTime, utcnow

PACKAGE = "crm_common_testmigrations"


def models_with_extra_column():
    """The models after someone added a column but forgot the migration."""
    metadata = MetaData()
    Table(
        "widgets",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("name", String(50), nullable=False),
        Column("created_at", UtcDateTime, nullable=False),
        Column("colour", String(20), nullable=True),
        Column("size", Integer, nullable=True),
    )
    return metadata


def models_with_missing_table():
    metadata = models_with_extra_column()
    Table("gadgets", metadata, Column("id", Integer, primary_key=True))
    return metadata


def state(url):
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            versions = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
            tables = set(inspect(connection).get_table_names())
            widgets = connection.execute(
                select(crm_common_testmigrations.widgets.c.name)).scalars().all() \
                if "widgets" in tables else None
        return versions, tables, widgets
    finally:
        engine.dispose()


@pytest.fixture
def sqlite_file_url(tmp_path):
    return f"sqlite:///{tmp_path / 'migrated.db'}"


def test_upgrade_creates_service_and_kernel_tables(sqlite_file_url):
    upgrade(PACKAGE, sqlite_file_url)
    versions, tables, _ = state(sqlite_file_url)
    assert versions == ["0002"]
    assert {"widgets", "crm_outbox", "crm_processed_events", "alembic_version"} <= tables


def test_upgrade_twice_is_harmless_and_keeps_data(sqlite_file_url):
    upgrade(PACKAGE, sqlite_file_url, revision="0001")
    assert state(sqlite_file_url)[0] == ["0001"]
    engine = make_engine(sqlite_file_url)
    with engine.begin() as connection:
        # Revision 0001 has no colour column yet: insert only what it has.
        connection.execute(text("INSERT INTO widgets (name, created_at) VALUES (:name, :at)"),
                           {"name": "kept", "at": utcnow().isoformat()})
    engine.dispose()
    upgrade(PACKAGE, sqlite_file_url)
    upgrade(PACKAGE, sqlite_file_url)
    versions, _, widgets = state(sqlite_file_url)
    assert versions == ["0002"]
    assert widgets == ["kept"]


def test_schema_drift_is_empty_when_models_and_migrations_agree(sqlite_file_url):
    assert schema_drift(PACKAGE, crm_common_testmigrations.metadata, sqlite_file_url) == []


def test_schema_drift_reports_a_column_the_migrations_lack(sqlite_file_url):
    drift = schema_drift(PACKAGE, models_with_extra_column(), sqlite_file_url)
    assert [(d[0], d[2], d[3].name) for d in drift] == [("add_column", "widgets", "size")]


def test_schema_drift_reports_a_missing_table(sqlite_file_url):
    drift = schema_drift(PACKAGE, models_with_missing_table(), sqlite_file_url)
    kinds = {(d[0], getattr(d[1], "name", None)) for d in drift if d[0] == "add_table"}
    assert kinds == {("add_table", "gadgets")}
    assert any(d[0] == "add_column" and d[3].name == "size" for d in drift)


def test_upgrade_of_a_bad_url_fails_loudly(tmp_path):
    with pytest.raises(OperationalError):
        upgrade(PACKAGE, f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}")


# --- PostgreSQL ------------------------------------------------------------------

def test_schema_drift_on_postgres(pg_url):
    assert schema_drift(PACKAGE, crm_common_testmigrations.metadata, pg_url) == []
    drift = schema_drift(PACKAGE, models_with_extra_column(), pg_url)
    assert [(d[0], d[2], d[3].name) for d in drift] == [("add_column", "widgets", "size")]


def test_concurrent_upgrades_on_postgres_both_succeed(pg_url):
    """Several instances of a service start at once, each migrating at start."""
    results = []

    def migrate():
        try:
            upgrade(PACKAGE, pg_url)
            results.append("ok")
        except Exception as exc:  # reported below with the cause
            results.append(repr(exc))

    threads = [eventlet.spawn(migrate) for _ in range(4)]
    for thread in threads:
        thread.wait()
    assert results == ["ok"] * 4
    versions, tables, _ = state(pg_url)
    assert versions == ["0002"]
    assert {"widgets", "crm_outbox", "crm_processed_events"} <= tables
    # A later start finds the schema at head and changes nothing.
    upgrade(PACKAGE, pg_url)
    assert state(pg_url)[0] == ["0002"]


def test_concurrent_upgrades_on_postgres_with_a_slow_commit(pg_url):
    """The migration lock must cover the commit: an instance that took the lock
    while another's migration was still uncommitted would migrate again and
    collide with it (duplicate tables)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    database = pg_url.rsplit("/", 1)[1]

    def slow_commit(connection):
        if connection.engine.url.database == database:
            eventlet.sleep(0.3)  # a commit that takes a while to reach the server

    event.listen(Engine, "commit", slow_commit)
    results = []

    def migrate():
        try:
            upgrade(PACKAGE, pg_url)
            results.append("ok")
        except Exception as exc:
            results.append(repr(exc))

    try:
        threads = [eventlet.spawn(migrate) for _ in range(2)]
        for thread in threads:
            thread.wait()
    finally:
        event.remove(Engine, "commit", slow_commit)
    assert results == ["ok", "ok"]
    assert state(pg_url)[0] == ["0002"]
