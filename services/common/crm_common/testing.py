"""Helpers for service tests: an in-memory database with the real schema, throwaway
PostgreSQL databases, and a check that migrations match the models."""
import os
import secrets
import socket
import subprocess
import time
from contextlib import contextmanager

from sqlalchemy.engine import make_url
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

# The kernel tables are defined beside the code that uses them; importing
# those modules puts the tables into kernel_metadata.
import crm_common.consumer  # noqa: F401
import crm_common.outbox  # noqa: F401
from crm_common.db import kernel_metadata, make_engine, make_session_factory
from crm_common.migrate import upgrade


def memory_session(service_metadata):
    """A session on a fresh in-memory SQLite database holding the service's tables."""
    engine = make_engine("sqlite://")
    service_metadata.create_all(engine)
    kernel_metadata.create_all(engine)
    return make_session_factory(engine)()


def schema_drift(migrations_package, service_metadata, url):
    """Differences between the migrated schema at ``url`` and the models (empty when in step)."""
    upgrade(migrations_package, url)
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return compare_metadata(context, [service_metadata, kernel_metadata])
    finally:
        engine.dispose()


def postgres_base_url():
    """The server the PostgreSQL tests use (CRM_TEST_PG_URL); `make test` makes sure it runs."""
    return os.environ.get("CRM_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432").rstrip("/")


def _postgres_admin_connection():
    import psycopg2

    url = make_url(postgres_base_url())
    params = {"host": url.host or "127.0.0.1", "port": url.port or 5432,
              "user": url.username or "postgres", "dbname": "postgres"}
    if url.password:
        params["password"] = url.password
    # No skip when the server is missing: a test run without the real
    # database must fail, not pass by testing less.
    connection = psycopg2.connect(connect_timeout=5, **params)
    connection.autocommit = True
    return connection


@contextmanager
def postgres_database(prefix="crm_test", template=None):
    """A fresh PostgreSQL database for a test, empty or a copy of the database ``template``;
    yields its URL and drops it afterwards."""
    name = f"{prefix}_{secrets.token_hex(5)}"
    admin = _postgres_admin_connection()
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        try:
            yield f"{postgres_base_url()}/{name}"
        finally:
            with admin.cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


def wait_until(condition, timeout=10.0, interval=0.05, message="condition"):
    """Poll ``condition`` until it returns something truthy (and return that); fail after ``timeout`` s.

    The one way tests wait for something asynchronous: never a bare sleep.
    Under `nameko test` (eventlet's monkey patch) time.sleep yields to other
    green threads.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def stop_process(process, timeout=20):
    """Stop a process a test started: SIGTERM, then SIGKILL if it is not gone within ``timeout`` s."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def free_port():
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# A fixed keyring for unit tests (crm_common.crypto), so they never create a
# key file under the repository's var/. Not secret: test data only.
TEST_DATA_KEYS = "test1:" + "dGVzdC1kYXRhLWtleS0xLTAxMjM0NTY3ODlhYmNkZWY="
TEST_BLIND_INDEX_KEY = "dGVzdC1ibGluZC1pbmRleC1rZXktMDEyMzQ1Njc4OWE="


def use_test_keyring(monkeypatch):
    """Point crm_common.crypto at TEST_DATA_KEYS for the rest of the test."""
    from crm_common.crypto import reset_keyring

    monkeypatch.setenv("CRM_DATA_KEYS", TEST_DATA_KEYS)
    monkeypatch.setenv("CRM_BLIND_INDEX_KEY", TEST_BLIND_INDEX_KEY)
    monkeypatch.delenv("CRM_DATA_KEYS_FILE", raising=False)
    reset_keyring()
