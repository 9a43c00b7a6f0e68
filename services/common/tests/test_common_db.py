"""crm_common.db.Database: one session per worker, committed before the reply."""
import time

import eventlet
import pytest
from nameko.exceptions import RemoteError
from nameko.extensions import DependencyProvider
from nameko.rpc import rpc
from nameko.standalone.rpc import ServiceRpcProxy
from sqlalchemy import create_engine, func, select

from crm_common_test_helpers import notes_table
from crm_common.db import Database, make_engine, make_session_factory
from crm_common.errors import Conflict


class SlowAfterReply(DependencyProvider):
    """Stands for any dependency that does IO after the reply went out (metrics,
    tracing): nameko runs worker_result hooks after sending the RPC reply and
    before worker_teardown."""

    def worker_result(self, worker_ctx, result=None, exc_info=None):
        eventlet.sleep(0.2)


class NotesService:
    name = "notes"
    db = Database()
    slow = SlowAfterReply()

    @rpc
    def write(self, text):
        return self.db.execute(notes_table.insert().values(text=text)).inserted_primary_key[0]

    @rpc
    def read(self, note_id):
        return self.db.execute(select(notes_table.c.text).where(notes_table.c.id == note_id)).scalar()

    @rpc
    def write_then_fail(self, text):
        self.db.execute(notes_table.insert().values(text=text))
        self.db.flush()
        raise ValueError("failed after writing")

    @rpc
    def write_then_refuse(self, text):
        self.db.execute(notes_table.insert().values(text=text))
        raise Conflict("duplicate", {"text": ["Already taken."]})


def count_notes(url):
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(select(func.count()).select_from(notes_table)).scalar()
    finally:
        engine.dispose()


def read_note(url, note_id):
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(
                select(notes_table.c.text).where(notes_table.c.id == note_id)).scalar()
    finally:
        engine.dispose()


def test_write_is_committed_before_the_reply(container_factory, rabbit_config, sqlite_url):
    container_factory(NotesService, dict(rabbit_config, DB_URL=sqlite_url)).start()
    with ServiceRpcProxy("notes", rabbit_config, timeout=10) as notes:
        for i in range(5):
            note_id = notes.write(f"note {i}")
            # Read back at once, through the service and straight from the file.
            assert notes.read(note_id) == f"note {i}"
            assert read_note(sqlite_url, note_id) == f"note {i}"
    assert count_notes(sqlite_url) == 5


def test_failed_method_leaves_nothing_written(container_factory, rabbit_config, sqlite_url):
    container_factory(NotesService, dict(rabbit_config, DB_URL=sqlite_url)).start()
    with ServiceRpcProxy("notes", rabbit_config, timeout=10) as notes:
        with pytest.raises(RemoteError) as raised:
            notes.write_then_fail("lost")
        assert raised.value.exc_type == "ValueError"
        # The failed write is rolled back before the reply: the next request
        # can write at once (SQLite's lock wait would block the whole process).
        started = time.monotonic()
        with pytest.raises(Conflict) as refused:
            notes.write_then_refuse("lost too")
        assert refused.value.errors == {"text": ["Already taken."]}
        kept = notes.write("kept")
        assert notes.read(kept) == "kept"
        assert time.monotonic() - started < 2.0
    assert count_notes(sqlite_url) == 1


def test_database_url_from_service_env_when_config_has_none(
        container_factory, rabbit_config, sqlite_url, monkeypatch):
    monkeypatch.setenv("CRM_NOTES_DB_URL", sqlite_url)
    container_factory(NotesService, rabbit_config).start()
    with ServiceRpcProxy("notes", rabbit_config, timeout=10) as notes:
        notes.write("via env")
    assert count_notes(sqlite_url) == 1


def test_sqlite_file_engine_uses_wal_and_foreign_keys(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
    engine.dispose()


def test_in_memory_engine_is_one_database_for_every_session():
    engine = make_engine("sqlite://")
    notes_table.metadata.create_all(engine)
    Session = make_session_factory(engine)
    with Session() as first:
        first.execute(notes_table.insert().values(text="shared"))
        first.commit()
    with Session() as second:
        assert second.execute(select(func.count()).select_from(notes_table)).scalar() == 1


class MigratedService:
    name = "migrated"
    db = Database(migrations="crm_common_testmigrations")

    @rpc
    def tables(self):
        from sqlalchemy import inspect

        return sorted(inspect(self.db.connection()).get_table_names())


def test_database_migrates_at_start(container_factory, rabbit_config, tmp_path, monkeypatch):
    monkeypatch.delenv("CRM_MIGRATE_ON_START", raising=False)
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    container_factory(MigratedService, dict(rabbit_config, DB_URL=url)).start()
    with ServiceRpcProxy("migrated", rabbit_config, timeout=10) as service:
        tables = service.tables()
    assert {"widgets", "crm_outbox", "crm_processed_events", "alembic_version"} <= set(tables)


def test_database_migration_at_start_can_be_turned_off(
        container_factory, rabbit_config, tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_MIGRATE_ON_START", "false")
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    container_factory(MigratedService, dict(rabbit_config, DB_URL=url)).start()
    with ServiceRpcProxy("migrated", rabbit_config, timeout=10) as service:
        assert service.tables() == []


def test_a_plain_postgresql_url_runs_on_psycopg2():
    """On Kubernetes a service's URL is CloudNativePG's generated `uri`
    (postgresql://user:password@<cluster>-rw.<namespace>:5432/db), used as is
    (deploy/k8s/base/postgres.yaml): SQLAlchemy must pick the locked driver."""
    engine = make_engine("postgresql://crm_sales:secret@crm-sales-db-rw.crm:5432/crm_sales")
    try:
        assert engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg2"
        assert engine.url.database == "crm_sales"
    finally:
        engine.dispose()
