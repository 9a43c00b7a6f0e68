"""crm_common.green_sqlite: on the default (SQLite) stack, a slow query does not freeze the service."""
import statistics
import threading
import time

import pytest
import requests
from nameko.rpc import rpc
from nameko.standalone.rpc import ServiceRpcProxy
from nameko.testing.utils import find_free_port
from sqlalchemy import text

from crm_common_test_helpers import wait_for
from crm_common.db import Database, make_engine
from crm_common.ops import OpsEndpoints

# The slow query runs until released, or for this long at most.
SLOW_QUERY_SECONDS = 8.0


def make_service(name, running, released):
    class SlowQueryService(OpsEndpoints):
        db = Database()

        @rpc
        def slow_report(self):
            """A query that keeps SQLite busy until the test releases it (as an export would)."""
            deadline = time.monotonic() + SLOW_QUERY_SECONDS
            connection = self.db.connection().connection.driver_connection

            def keep_going():
                running.set()
                return not released.is_set() and time.monotonic() < deadline

            connection.create_function("keep_going", 0, keep_going)
            started = time.monotonic()
            self.db.execute(text("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n "
                                 "WHERE keep_going()) SELECT count(*) FROM n")).scalar()
            return time.monotonic() - started

        @rpc
        def quick_read(self):
            return self.db.execute(text("SELECT count(*) FROM sqlite_master")).scalar()

    SlowQueryService.name = name
    return SlowQueryService


def test_while_one_worker_runs_a_slow_sqlite_query_the_service_answers_others_at_once(
        container_factory, rabbit_config, sqlite_url, unique_name):
    name = unique_name("slowsqlite")
    running, released = threading.Event(), threading.Event()
    port = find_free_port()
    container_factory(make_service(name, running, released),
                      dict(rabbit_config, DB_URL=sqlite_url, WEB_SERVER_ADDRESS=f"127.0.0.1:{port}")).start()

    with ServiceRpcProxy(name, rabbit_config, timeout=30) as service:
        assert service.quick_read() >= 0  # warmed up: connections made
        slow = service.slow_report.call_async()
        wait_for(running.is_set, message="the slow query running")
        health, reads = [], []
        for _ in range(5):
            started = time.monotonic()
            response = requests.get(f"http://127.0.0.1:{port}/health", timeout=SLOW_QUERY_SECONDS * 2)
            health.append(time.monotonic() - started)
            assert response.status_code == 200
            started = time.monotonic()
            service.quick_read()
            reads.append(time.monotonic() - started)
        # Every probe was answered while the slow query still ran ...
        assert not released.is_set()
        released.set()
        slow_seconds = slow.result()
        assert slow_seconds >= sum(health) + sum(reads)
        assert slow_seconds < SLOW_QUERY_SECONDS  # it ran until released, not to its own deadline
    # ... and at once: the typical probe within 100 ms.
    assert statistics.median(health) < 0.1, health
    assert statistics.median(reads) < 0.1, reads


@pytest.mark.parametrize("in_memory", [False, True])
def test_statements_fetches_and_transactions_behave_as_plain_sqlite(tmp_path, in_memory):
    engine = make_engine("sqlite://" if in_memory else f"sqlite:///{tmp_path / 'plain.db'}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"))
        connection.execute(text("INSERT INTO t (v) VALUES (:v)"), [{"v": f"v{n}"} for n in range(250)])
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM t")).scalar() == 250
        assert [row.v for row in connection.execute(text("SELECT v FROM t ORDER BY id LIMIT 3"))] == ["v0", "v1", "v2"]
        rows = connection.execute(text("SELECT id FROM t ORDER BY id"))
        assert len(rows.fetchmany(100)) == 100 and len(rows.fetchall()) == 150
    with pytest.raises(RuntimeError):
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM t"))
            raise RuntimeError("rolled back")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM t")).scalar() == 250
        if not in_memory:
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    engine.dispose()


def test_writers_of_one_file_take_turns_in_the_order_they_came(tmp_path):
    """SQLite's own lock wait polls with growing sleeps: under load a writer could lose every race
    for seconds. Writers queue on a lock of their own instead, first come, first served."""
    import eventlet
    from eventlet.event import Event

    engine = make_engine(f"sqlite:///{tmp_path / 'turns.db'}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE log (writer INTEGER)"))
    first_may_commit = Event()

    def writer(number, about_to_write):
        with engine.begin() as connection:
            # Nothing yields between this and the INSERT asking for the lock.
            about_to_write.send()
            connection.execute(text("INSERT INTO log (writer) VALUES (:n)"), {"n": number})
            if number == 0:
                first_may_commit.wait()  # holds the write lock while the others line up

    threads = []
    for number in range(12):
        about_to_write = Event()
        threads.append(eventlet.spawn(writer, number, about_to_write))
        about_to_write.wait()  # this one is in line before the next is started
    first_may_commit.send()
    for thread in threads:
        thread.wait()  # none gave up with "database is locked"
    with engine.connect() as connection:
        order = [row.writer for row in connection.execute(text("SELECT writer FROM log ORDER BY rowid"))]
    assert order == list(range(12))
    engine.dispose()
