"""A query past CRM_STATEMENT_TIMEOUT_MS is cancelled by PostgreSQL and raised as QueryTimeout (503).

A runaway query must not hold a worker and a connection for minutes; the
caller learns what happened in its own terms, not as a driver error.
"""
import time

import pytest
from sqlalchemy import text

from crm_common.db import allow_long_statements, make_engine, make_session_factory
from crm_common.errors import QueryTimeout, ServiceUnavailable, problem_from_error


def test_a_statement_past_the_limit_is_cancelled_as_a_query_timeout(pg_url, monkeypatch):
    monkeypatch.setenv("CRM_STATEMENT_TIMEOUT_MS", "200")
    engine = make_engine(pg_url)
    try:
        session = make_session_factory(engine)()
        started = time.monotonic()
        with pytest.raises(QueryTimeout) as raised:
            session.execute(text("SELECT pg_sleep(5)"))
        assert time.monotonic() - started < 3, "the server did not cancel the statement"
        session.rollback()
        # The connection is usable again, with the same limit.
        assert session.execute(text("SELECT 1")).scalar() == 1
        assert session.execute(text("SHOW statement_timeout")).scalar() == "200ms"
        session.close()
    finally:
        engine.dispose()

    error = raised.value
    assert isinstance(error, ServiceUnavailable)  # callers that know only the 503 family still do right
    assert error.__cause__.pgcode == "57014"  # the driver error stays chained
    body = problem_from_error(error, request_id="r1")
    assert (body["status"], body["code"], body["title"]) == (503, "query_timeout", "The query took too long")


def test_the_limit_defaults_to_five_seconds_and_zero_turns_it_off(pg_url, monkeypatch):
    monkeypatch.delenv("CRM_STATEMENT_TIMEOUT_MS", raising=False)
    for kwargs, expected in (({}, "5s"), ({"statement_timeout": 0}, "0")):
        engine = make_engine(pg_url, **kwargs)
        try:
            with engine.connect() as connection:
                assert connection.execute(text("SHOW statement_timeout")).scalar() == expected
        finally:
            engine.dispose()


def test_an_admin_job_lifts_the_limit_for_one_transaction_only(pg_url, monkeypatch):
    monkeypatch.setenv("CRM_STATEMENT_TIMEOUT_MS", "100")
    engine = make_engine(pg_url, pool_size=1)
    try:
        session = make_session_factory(engine)()
        allow_long_statements(session, timeout_ms=5000)
        session.execute(text("SELECT pg_sleep(0.3)"))  # longer than the normal limit
        session.commit()
        # The next transaction on the same pooled connection has the normal limit again.
        with pytest.raises(QueryTimeout):
            session.execute(text("SELECT pg_sleep(0.3)"))
        session.rollback()
        session.close()
    finally:
        engine.dispose()


def test_sqlite_engines_have_no_statement_limit_and_allow_long_statements_is_a_no_op(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        session = make_session_factory(engine)()
        allow_long_statements(session)
        assert session.execute(text("SELECT 1")).scalar() == 1
        session.close()
    finally:
        engine.dispose()


def test_a_lost_connection_is_a_503_and_the_next_statement_reconnects(pg_url, monkeypatch):
    """A backend terminated under a worker (a database restart): ServiceUnavailable, not a bare
    OperationalError (a 500 at the gateway); the pool is invalidated, so the next checkout works."""
    import psycopg2

    engine = make_engine(pg_url, pool_size=2)
    try:
        session = make_session_factory(engine)()
        pid = session.execute(text("SELECT pg_backend_pid()")).scalar()
        admin = psycopg2.connect(pg_url.replace("+psycopg2", ""))
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", (pid,))
        admin.close()
        with pytest.raises(ServiceUnavailable) as raised:
            session.execute(text("SELECT 1"))
        assert not isinstance(raised.value, QueryTimeout)
        assert problem_from_error(raised.value, request_id="r1")["status"] == 503
        session.rollback()
        assert session.execute(text("SELECT 1")).scalar() == 1
        assert session.execute(text("SELECT pg_backend_pid()")).scalar() != pid
        session.close()
    finally:
        engine.dispose()


def test_connections_that_died_in_the_pool_cost_one_503_then_all_are_replaced(pg_url):
    """Nothing pings a connection before use (a round trip per request): after a database
    restart the first statement on a dead pooled connection answers 503, and every other pooled
    connection from before is replaced at its checkout, so the next units of work all succeed."""
    import psycopg2

    engine = make_engine(pg_url, pool_size=3, max_overflow=0)
    Session = make_session_factory(engine)
    try:
        sessions = [Session() for _ in range(3)]
        pids = [session.execute(text("SELECT pg_backend_pid()")).scalar() for session in sessions]
        for session in sessions:
            session.close()  # all three back in the pool, idle
        admin = psycopg2.connect(pg_url.replace("+psycopg2", ""))
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (pids,))
        admin.close()
        first = Session()
        with pytest.raises(ServiceUnavailable):
            first.execute(text("SELECT 1"))
        first.close()
        # Three units of work at once, each on a connection made after the failure.
        later = [Session() for _ in range(3)]
        fresh = [session.execute(text("SELECT pg_backend_pid()")).scalar() for session in later]
        assert not set(fresh) & set(pids)
        for session in later:
            session.close()
    finally:
        engine.dispose()
