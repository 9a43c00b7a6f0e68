"""rpc(read_only=True): a unit of work without a transaction, that cannot write.

On PostgreSQL through a real container and broker: what a read-only method sees, that a write
in it fails and leaves nothing, and that the writing methods' connections stay transactional
after read-only calls (a connection left in autocommit would commit half of a failed write)."""
import pytest
from nameko.exceptions import RemoteError
from nameko.standalone.rpc import ServiceRpcProxy
from sqlalchemy import create_engine, select, text

from crm_common.db import Database
from crm_common.entrypoints import rpc
from crm_common.errors import ServiceUnavailable
from crm_common_test_helpers import notes_table, notes_metadata
from crm_common.testing import kernel_metadata
from test_common_db import count_notes


class NotesService:
    name = "read_only_notes"
    db = Database(settings={"jit": "off"})

    @rpc
    def write(self, text_, then_fail=False):
        note_id = self.db.execute(notes_table.insert().values(text=text_)).inserted_primary_key[0]
        if then_fail:
            raise ValueError("failed after writing")
        return note_id

    @rpc(read_only=True)
    def read(self, note_id):
        return self.db.execute(select(notes_table.c.text).where(notes_table.c.id == note_id)).scalar()

    @rpc(read_only=True)
    def in_transaction_and_jit(self):
        # now() is the transaction's start; statement_timestamp() the statement's. After an earlier
        # statement they differ inside a transaction; in autocommit every statement is a
        # transaction of its own, so they are the same moment.
        self.db.execute(text("SELECT pg_sleep(0.01)"))
        same = self.db.execute(text("SELECT now() = statement_timestamp()")).scalar()
        return same, self.db.execute(text("SHOW jit")).scalar()

    @rpc(read_only=True)
    def sneaky_write(self, text_):
        self.db.execute(notes_table.insert().values(text=text_))


@pytest.fixture
def notes_db(pg_url):
    engine = create_engine(pg_url)
    notes_metadata.create_all(engine)
    kernel_metadata.create_all(engine)
    engine.dispose()
    return pg_url


def test_a_read_only_method_reads_without_a_transaction_and_cannot_write(container_factory, rabbit_config, notes_db):
    # One worker, so every call shares the one pooled connection.
    config = dict(rabbit_config, DB_URL=notes_db, max_workers=1)
    container_factory(NotesService, config).start()
    with ServiceRpcProxy("read_only_notes", rabbit_config, timeout=10) as notes:
        note_id = notes.write("first")
        assert notes.read(note_id) == "first"
        autocommit, jit = notes.in_transaction_and_jit()
        assert autocommit is True
        # The service's settings reach every connection.
        assert jit == "off"

        with pytest.raises(RemoteError, match="WriteInReadOnlyUnit"):
            notes.sneaky_write("never stored")
        # Writing methods are still transactional: the failed write rolls back whole.
        with pytest.raises(RemoteError, match="failed after writing"):
            notes.write("rolled back", then_fail=True)
    assert count_notes(notes_db) == 1


def test_a_read_only_method_survives_a_connection_that_died_in_the_pool(container_factory, rabbit_config, notes_db):
    """A read runs again once on a fresh connection; a write answers 503 (it may not be repeated)."""
    config = dict(rabbit_config, DB_URL=notes_db, max_workers=1)
    container_factory(NotesService, config).start()
    with ServiceRpcProxy("read_only_notes", rabbit_config, timeout=10) as notes:
        note_id = notes.write("kept")
        assert notes.read(note_id) == "kept"  # both pools now hold a live connection
        database = notes_db.rsplit("/", 1)[1]
        engine = create_engine(notes_db.rsplit("/", 1)[0] + "/postgres")
        with engine.connect() as admin:
            killed = admin.execute(text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = :database AND pid <> pg_backend_pid()"), {"database": database}).scalar()
        engine.dispose()
        assert killed >= 2
        assert notes.read(note_id) == "kept"
        with pytest.raises(ServiceUnavailable, match="connection was lost"):
            notes.write("after the cut")
