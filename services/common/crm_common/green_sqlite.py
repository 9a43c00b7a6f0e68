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
from collections import deque

from eventlet import tpool


class GreenCursor:
    """A sqlite3 cursor whose statements run in a pool thread. A statement's rows are fetched in
    the same hand-over and served from here: each hand-over costs about 0.1 ms, more than a
    simple statement itself, and SQLAlchemy fetches every row of a result anyway."""

    __slots__ = ("_cursor", "_rows")

    def __init__(self, cursor):
        self._cursor = cursor
        self._rows = None

    def execute(self, *args):
        self._rows = tpool.execute(_execute_and_fetch, self._cursor.execute, args)
        return self

    def executemany(self, *args):
        self._rows = tpool.execute(_execute_and_fetch, self._cursor.executemany, args)
        return self

    def executescript(self, *args):
        self._rows = tpool.execute(_execute_and_fetch, self._cursor.executescript, args)
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


def _execute_and_fetch(run, args):
    cursor = run(*args)
    return deque(cursor.fetchall()) if cursor.description is not None else None


class GreenConnection:
    """A sqlite3 connection whose slow calls run in a pool thread; everything else (attributes
    such as isolation_level, create_function ...) goes straight to the connection."""

    __slots__ = ("_connection",)

    def __init__(self, connection):
        object.__setattr__(self, "_connection", connection)

    def cursor(self, *args):
        return GreenCursor(self._connection.cursor(*args))

    def execute(self, *args):
        return self.cursor().execute(*args)

    def executemany(self, *args):
        return self.cursor().executemany(*args)

    # Outside a transaction these do nothing, at once: no hand-over (the pool rolls back every
    # connection it gets back, most of them with nothing to undo).
    def commit(self):
        if self._connection.in_transaction:
            tpool.execute(self._connection.commit)

    def rollback(self):
        if self._connection.in_transaction:
            tpool.execute(self._connection.rollback)

    def close(self):
        tpool.execute(self._connection.close)

    def __getattr__(self, name):
        return getattr(self._connection, name)

    def __setattr__(self, name, value):
        setattr(self._connection, name, value)


def wrap(connection):
    return GreenConnection(connection)
