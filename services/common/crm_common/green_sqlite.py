"""SQLite that lets the other green threads run while it works.

Under eventlet every request of a service is a green thread on one OS thread. psycopg2
cooperates (crm_common's eventlet patch waits on its socket), but ``sqlite3`` is a C call the
monkey patch cannot reach: a 1.5 s SQLite query stalled a 10 ms ``eventlet.sleep`` loop in the
same process for 1.9 s, so one export or report froze every other request of the service, its
/health and /metrics included. A busy SQLite waiting for another writer's lock (busy_timeout)
froze it the same way.

``wrap(connection)`` returns the connection with every call that can take time (statements,
fetches, commits, rollbacks) run in eventlet's pool of OS threads (``eventlet.tpool``): the
calling green thread waits, the others run. One green thread uses a connection at a time (the
pool hands it out), so the connection is never used by two OS threads at once; it is opened
with ``check_same_thread=False`` because the pool's threads take turns with it.

Each call costs a hand-over to a pool thread and back, about 0.1 ms here: more than a simple
statement itself, so a statement and the fetch of its rows go in one hand-over. That is the
price of not freezing the process; PostgreSQL, the database for real load, pays none of it.
"""
import sqlite3
from collections import deque

from eventlet import tpool
from eventlet.semaphore import Semaphore


class GreenCursor:
    """A sqlite3 cursor whose statements run in a pool thread. A statement's rows are fetched in
    the same hand-over and served from here: each hand-over costs about 0.1 ms, more than a
    simple statement itself, and SQLAlchemy fetches every row of a result anyway."""

    __slots__ = ("_cursor", "_rows", "_connection")

    def __init__(self, cursor, connection):
        self._cursor = cursor
        self._rows = None
        self._connection = connection

    def execute(self, statement, *args):
        return self._run(self._cursor.execute, statement, args)

    def executemany(self, statement, *args):
        return self._run(self._cursor.executemany, statement, args)

    def executescript(self, script):
        return self._run(self._cursor.executescript, script, (), writes=True)

    def _run(self, method, statement, args, writes=None):
        self._connection.before_statement(_writes(statement) if writes is None else writes)
        try:
            self._rows = tpool.execute(_execute_and_fetch, method, (statement, *args))
        finally:
            self._connection.after_statement()
        return self

    def fetchone(self):
        return self._rows.popleft() if self._rows else None

    def fetchmany(self, size=None):
        count = self._cursor.arraysize if size is None else size
        return [self._rows.popleft() for _ in range(min(count, len(self._rows or ())))]

    def fetchall(self):
        rows, self._rows = list(self._rows or ()), None
        return rows

    def __iter__(self):
        return iter(self.fetchall())

    def __getattr__(self, name):
        # description, rowcount, lastrowid, close, arraysize ...: quick, straight through.
        return getattr(self._cursor, name)

    def __setattr__(self, name, value):
        if name in GreenCursor.__slots__:
            object.__setattr__(self, name, value)
        else:
            setattr(self._cursor, name, value)


def _writes(statement):
    return statement.lstrip()[:8].lower().startswith(WRITING_STATEMENTS)


def _execute_and_fetch(run, args):
    cursor = run(*args)
    return deque(cursor.fetchall()) if cursor.description is not None else None


class GreenConnection:
    """A sqlite3 connection whose slow calls run in a pool thread; everything else (attributes
    such as isolation_level, create_function ...) goes straight to the connection.

    SQLite lets one transaction write at a time, and one that finds the database locked polls
    for it (busy_timeout) with growing sleeps: under load an unlucky writer lost every race and
    waited seconds (an opportunity's create answered 503 after 3 s on the bench). So writers of
    one database file take turns on a green lock first, in the order they came, from their
    first write until their commit or rollback, which is when SQLite's own write lock is held.
    Waiting longer than busy_timeout fails as SQLite would: "database is locked"."""

    __slots__ = ("_connection", "_writer", "_holding", "_lock_timeout")

    def __init__(self, connection, writer_lock, lock_timeout):
        object.__setattr__(self, "_connection", connection)
        object.__setattr__(self, "_writer", writer_lock)
        object.__setattr__(self, "_holding", False)
        object.__setattr__(self, "_lock_timeout", lock_timeout)

    def cursor(self, *args):
        return GreenCursor(self._connection.cursor(*args), self)

    def execute(self, *args):
        return self.cursor().execute(*args)

    def executemany(self, *args):
        return self.cursor().executemany(*args)

    def before_statement(self, writes):
        if writes and not self._holding:
            if not self._writer.acquire(timeout=self._lock_timeout):
                raise sqlite3.OperationalError("database is locked")
            object.__setattr__(self, "_holding", True)

    def after_statement(self):
        # A write outside a transaction (autocommit), or a failed one, is over already.
        if self._holding and not self._connection.in_transaction:
            self._release()

    def _release(self):
        object.__setattr__(self, "_holding", False)
        self._writer.release()

    # Outside a transaction these do nothing, at once: no hand-over (the pool rolls back every
    # connection it gets back, most of them with nothing to undo).
    def commit(self):
        self._end_transaction(self._connection.commit)

    def rollback(self):
        self._end_transaction(self._connection.rollback)

    def _end_transaction(self, end):
        try:
            if self._connection.in_transaction:
                tpool.execute(end)
        finally:
            self.after_statement()

    def close(self):
        try:
            tpool.execute(self._connection.close)
        finally:
            if self._holding:
                self._release()

    def __getattr__(self, name):
        return getattr(self._connection, name)

    def __setattr__(self, name, value):
        setattr(self._connection, name, value)


# Statements that take SQLite's write lock (lower case, as _writes compares them).
WRITING_STATEMENTS = ("insert", "update", "delete", "replace", "create", "drop", "alter", "reindex", "vacuum")
_writer_locks = {}


def wrap(connection, database, lock_timeout):
    """``connection`` to the SQLite file ``database``, cooperative; writers of that file in this
    process take turns, waiting at most ``lock_timeout`` seconds."""
    writer_lock = _writer_locks.setdefault(str(database), Semaphore(1))
    return GreenConnection(connection, writer_lock, lock_timeout)
