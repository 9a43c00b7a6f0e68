"""Database access for a nameko service: one engine per service, one session per worker.

The session commits when the service method returns, before nameko sends the
RPC reply or acknowledges the event. (nameko calls dependency
``worker_result`` hooks only *after* the reply is sent, so committing there
would acknowledge writes that might still fail.) An exception rolls back.

A method declared ``rpc(read_only=True)`` gets a session without a transaction
(the connection in autocommit; on PostgreSQL from a pool of its own): no BEGIN
and COMMIT round trips around its queries, which under READ COMMITTED see what
they would have seen inside one (each statement its own snapshot). A write
through that session raises. A read whose pooled connection had died (the
database restarted) runs again once; a write answers 503.
"""
import logging
from functools import partial

from nameko.extensions import DependencyProvider
from sqlalchemy import create_engine, event, MetaData, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import StaticPool

from crm_common import green_sqlite
from crm_common.config import db_url, env, env_bool
from crm_common.errors import QueryTimeout, ServiceUnavailable
from crm_common.metrics import time_statements

log = logging.getLogger(__name__)

# Tables of the shared mechanisms (outbox, processed events) that every
# service database holds beside its own tables.
kernel_metadata = MetaData()

OUTBOX_WRITTEN = "crm_outbox_written"
READ_ONLY = "crm_read_only"


# PostgreSQL's SQLSTATE for a statement cancelled by statement_timeout (query_canceled).
QUERY_CANCELED = "57014"
DEFAULT_STATEMENT_TIMEOUT_MS = 5000
# What allow_long_statements grants a transaction of an admin job (a rebuild's final sweep).
DEFAULT_LONG_STATEMENT_TIMEOUT_MS = 600_000
# Replace pooled connections before idle timeouts on the way (firewalls, PgBouncer) cut them.
DEFAULT_RECYCLE_SECONDS = 1800


def statement_timeout_ms():
    """CRM_STATEMENT_TIMEOUT_MS: the longest a single statement may run (0: no limit)."""
    return env("CRM_STATEMENT_TIMEOUT_MS", DEFAULT_STATEMENT_TIMEOUT_MS, int)


def recycle_seconds():
    """CRM_DB_RECYCLE_SECONDS: a pooled PostgreSQL connection older than this is replaced at its
    next checkout (default 30 minutes)."""
    return env("CRM_DB_RECYCLE_SECONDS", DEFAULT_RECYCLE_SECONDS, int)


# How long a SQLite writer waits for the database's write lock before "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 5000


def make_engine(url, pool_size=10, statement_timeout=None, isolation_level=None, max_overflow=None,
                settings=None):
    """An engine tuned for the backend: SQLite files get WAL and a busy timeout.

    On PostgreSQL every connection gets a statement_timeout (``statement_timeout``
    ms, else CRM_STATEMENT_TIMEOUT_MS; 0 turns it off, as migrations do), so a
    runaway query (a filter no index serves, a huge page) is cancelled by the
    server instead of holding a worker and a connection; the cancellation is
    raised as QueryTimeout (503), not as a bare driver error.
    ``isolation_level`` (PostgreSQL only) is set once per connection, for
    engines whose every statement stands alone ("AUTOCOMMIT"). ``settings``
    (PostgreSQL only): further server settings every connection starts with,
    such as {"jit": "off"}, instead of a SET round trip per unit of work.
    """
    if url.startswith("sqlite"):
        in_memory = url in ("sqlite://", "sqlite:///:memory:")
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False},
            poolclass=StaticPool if in_memory else None,
        )

        if not in_memory:
            # Every statement, fetch and commit runs in eventlet's OS-thread pool, so a slow
            # one (an export, a report, a lock wait) no longer freezes the process: see
            # crm_common.green_sqlite. (An in-memory database is one connection shared by every
            # green thread, in tests only: it stays a plain one.)
            @event.listens_for(engine, "do_connect")
            def _green_connection(dialect, _record, cargs, cparams):
                return green_sqlite.wrap(dialect.loaded_dbapi.connect(*cargs, **cparams), engine.url.database,
                                         SQLITE_BUSY_TIMEOUT_MS / 1000)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            if not in_memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    timeout = statement_timeout_ms() if statement_timeout is None else statement_timeout
    options = {"isolation_level": isolation_level} if isolation_level else {}
    overflow = pool_size if max_overflow is None else max_overflow
    # No pool_pre_ping: a SELECT 1 before every checkout was a round trip on every request
    # (12% of the gateway's samples, 7% of the customers service's). A connection that died
    # in the pool instead fails its first statement: _raise_query_timeout makes that a 503
    # (an event is retried), and SQLAlchemy then discards every pooled connection older than
    # the failure, so one database restart costs each process one failed unit of work, not one
    # per pooled connection. Connections are recycled before an idle firewall or server
    # timeout can cut them silently.
    server_settings = {"statement_timeout": int(timeout), **(settings or {})}
    engine = create_engine(url, pool_size=pool_size, max_overflow=overflow, pool_recycle=recycle_seconds(),
                           connect_args={"options": " ".join(f"-c {name}={value}"
                                                             for name, value in server_settings.items())},
                           **options)
    event.listen(engine, "handle_error", _raise_query_timeout)
    return engine


def _raise_query_timeout(context):
    """A statement PostgreSQL cancelled for its time limit becomes QueryTimeout;
    a lost connection becomes ServiceUnavailable.

    Raised from the handler, it replaces SQLAlchemy's OperationalError (the
    driver error stays chained as its cause), so the service's caller gets a
    typed error it can answer 503 to. Other cancellations (pg_cancel_backend)
    share the SQLSTATE and are, to the caller, the same thing.
    """
    if context.is_disconnect:
        # The connection died under the statement, or in the pool before it
        # (PostgreSQL restarted, the backend was terminated): a bare
        # OperationalError would be answered as a 500. A 503 says "try again", which is true:
        # SQLAlchemy still invalidates this connection and the pool (it does so
        # after this handler, whatever it raises), so the next checkout
        # reconnects; an event handler retries (503 is worth retrying).
        lost = ServiceUnavailable("The database connection was lost; try again.")
        lost.connection_lost = True  # a read-only unit of work retries once (Database.worker_setup)
        raise lost
    if context.connection is None and isinstance(context.sqlalchemy_exception, OperationalError):
        # No connection could be made (the server is restarting, or refuses more
        # clients): the database is unavailable, a 503, not a 500.
        raise ServiceUnavailable("The database is not accepting connections; try again.")
    if getattr(context.original_exception, "pgcode", None) == QUERY_CANCELED:
        raise QueryTimeout("The database cancelled a query that ran longer than its time limit; "
                           "narrow the request (filters, a smaller page) or try again later.")


def allow_long_statements(session, timeout_ms=None):
    """Lift the statement time limit for the rest of ``session``'s current transaction.

    For admin jobs whose single statements legitimately scan whole tables
    (a report rebuild's sweep and summaries): SET LOCAL ends with the
    transaction, so the pooled connection goes back with the normal limit.
    CRM_LONG_STATEMENT_TIMEOUT_MS (default 10 minutes). No-op on SQLite.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    timeout = timeout_ms if timeout_ms is not None else env(
        "CRM_LONG_STATEMENT_TIMEOUT_MS", DEFAULT_LONG_STATEMENT_TIMEOUT_MS, int)
    session.execute(text(f"SET LOCAL statement_timeout = {int(timeout)}"))


def make_session_factory(engine):
    # Objects stay readable after commit: entrypoints serialise them after the commit.
    return sessionmaker(bind=engine, expire_on_commit=False)


class WriteInReadOnlyUnit(RuntimeError):
    """A method declared read-only tried to write: a programming error, not the caller's."""


def make_read_only_session_factory(engine, autocommit_engine=False):
    """Sessions for read-only units of work: autocommit connections and no writes, neither flushed
    objects nor INSERT/UPDATE/DELETE statements.

    ``autocommit_engine``: ``engine`` was made with ``isolation_level="AUTOCOMMIT"`` (PostgreSQL),
    a pool of its own whose connections never switch (switching back at every check-in cost 5% of
    the reporting service's samples). Otherwise the connections of ``engine`` switch to
    autocommit for the unit of work and back when they return to the pool (SQLite, where a second
    engine on an in-memory database would be a second, empty database)."""
    if not autocommit_engine:
        engine = engine.execution_options(isolation_level="AUTOCOMMIT")
    factory = sessionmaker(bind=engine, expire_on_commit=False,
                           info={READ_ONLY: True})

    def refuse_flush(session, flush_context, instances):
        if session.new or session.dirty or session.deleted:
            raise WriteInReadOnlyUnit("A read-only method changed objects; declare it without read_only.")

    def refuse_write(state):
        if state.is_insert or state.is_update or state.is_delete:
            raise WriteInReadOnlyUnit("A read-only method ran a write; declare it without read_only.")

    event.listen(factory, "before_flush", refuse_flush)
    event.listen(factory, "do_orm_execute", refuse_write)
    return factory


class Database(DependencyProvider):
    """Gives each worker a SQLAlchemy session on the service's own database.

    ``migrations`` names the service's alembic package; the schema is brought
    to head when the service starts (CRM_MIGRATE_ON_START, on by default).
    ``metadata`` is the service's own MetaData (its models' ``Base.metadata``):
    service-wide jobs such as re-encrypting data under a new key
    (crm_common.ops) find the service's tables there.
    After a commit that wrote outbox rows, the outbox relay is woken so events
    go out at once instead of at the next poll. ``settings``: PostgreSQL server
    settings for every connection of the service (see make_engine).
    """

    def __init__(self, migrations=None, metadata=None, settings=None):
        self.migrations = migrations
        self.metadata = metadata
        self.settings = settings
        self.sessions = {}
        self.relay = None

    def setup(self):
        service_name = self.container.service_name
        self.url = self.container.config.get("DB_URL") or db_url(service_name)
        if self.migrations and env_bool("CRM_MIGRATE_ON_START", True):
            from crm_common.migrate import upgrade

            upgrade(self.migrations, self.url)
        # Enough connections for every worker plus the outbox relay; of those,
        # CRM_DB_IDLE_CONNECTIONS stay open when idle (default: all of them), in
        # each pool (PostgreSQL has a second one for read-only methods).
        # The test runner keeps few: the test systems alive at one time share
        # the server's max_connections (100 on a stock PostgreSQL), and a
        # system's idle pools held most of them after a busy test.
        busy = self.container.max_workers + 2
        idle = max(1, min(busy, env("CRM_DB_IDLE_CONNECTIONS", busy, int)))
        self.engine = make_engine(self.url, pool_size=idle, max_overflow=busy + busy - idle, settings=self.settings)
        time_statements(self.engine, service_name)
        self.Session = make_session_factory(self.engine)
        self.reader = self.engine
        if self.engine.dialect.name == "postgresql":
            # Read-only units of work get a pool of autocommit connections of their own.
            self.reader = make_engine(self.url, pool_size=idle, max_overflow=busy + busy - idle,
                                      settings=self.settings, isolation_level="AUTOCOMMIT")
            time_statements(self.reader, service_name)
        self.ReadOnlySession = make_read_only_session_factory(self.reader,
                                                              autocommit_engine=self.reader is not self.engine)
        from crm_common.audit import install_audit_listener

        # Changes to the models the service registered with audit_model are audited on flush.
        install_audit_listener(self.Session)

        from crm_common.outbox import OutboxRelay

        self.relay = OutboxRelay(self.Session, self.container.config, service_name)

    def start(self):
        self.container.spawn_managed_thread(self.relay.run, identifier="outbox_relay")

    def stop(self):
        self.relay.stop()
        self.engine.dispose()
        self.reader.dispose()

    def kill(self):
        self.relay.stop()

    def get_dependency(self, worker_ctx):
        from crm_common.audit import AUDIT_CONTEXT, context_from_worker_data

        read_only = getattr(worker_ctx.entrypoint, "read_only", False)
        session = (self.ReadOnlySession if read_only else self.Session)()
        # Read lazily at flush time: RunAs may switch the worker's actor after this.
        session.info[AUDIT_CONTEXT] = lambda: context_from_worker_data(worker_ctx.data)
        self.sessions[worker_ctx] = session
        return session

    def worker_setup(self, worker_ctx):
        session = self.sessions[worker_ctx]
        service = worker_ctx.service
        method_name = worker_ctx.entrypoint.method_name
        method = getattr(service, method_name)
        relay = self.relay

        read_only = session.info.get(READ_ONLY, False)

        def run_and_commit(*args, **kwargs):
            try:
                result = method(*args, **kwargs)
                session.commit()
            except BaseException as error:
                # Roll back before nameko sends the error reply, not at
                # teardown: until then a SQLite write lock would still be held,
                # and SQLite's lock wait blocks every green thread.
                session.rollback()
                if not (read_only and getattr(error, "connection_lost", False)):
                    raise
                # A pooled connection had died (the database restarted, a backend was
                # terminated): the pool has been replaced, and a read is safe to run again.
                result = method(*args, **kwargs)
                session.commit()
            if session.info.pop(OUTBOX_WRITTEN, False):
                relay.kick()
            return result

        # nameko looks the method up after worker_setup: this instance
        # attribute makes it run inside the unit of work.
        if getattr(worker_ctx.entrypoint, "batched", False):
            from crm_common.consumer import apply_batch

            # An event handler's worker gets a batch of deliveries (crm_common.consumer).
            setattr(service, method_name, partial(apply_batch, method, session, worker_ctx, relay.kick))
        else:
            setattr(service, method_name, run_and_commit)

    def worker_teardown(self, worker_ctx):
        session = self.sessions.pop(worker_ctx, None)
        if session is not None:
            session.close()  # rolls back anything not committed
