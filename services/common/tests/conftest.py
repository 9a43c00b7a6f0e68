"""Fixtures shared by the crm_common tests.

Run with ``nameko test services/common/tests`` (eventlet monkey patch first).
RabbitMQ fixtures (``rabbit_config``, ``container_factory`` ...) come from
nameko's pytest plugin; PostgreSQL tests get a throwaway database each.
"""
import random
import string

import pytest
from sqlalchemy import create_engine

from crm_common.testing import postgres_database, use_test_keyring

from crm_common_test_helpers import notes_metadata


@pytest.fixture(autouse=True)
def test_keyring(monkeypatch):
    """Encrypted columns (the outbox payload) use a fixed test keyring, never a key file in var/."""
    use_test_keyring(monkeypatch)


@pytest.fixture
def sqlite_url(tmp_path):
    """A SQLite file with the notes table and the kernel tables, as a service would have."""
    url = f"sqlite:///{tmp_path / 'service.db'}"
    create_service_tables(url)
    return url


@pytest.fixture
def pg_service_url(pg_url):
    """``sqlite_url`` on PostgreSQL."""
    create_service_tables(pg_url)
    return pg_url


def create_service_tables(url):
    from crm_common.testing import kernel_metadata  # imports every kernel table

    engine = create_engine(url)
    notes_metadata.create_all(engine)
    kernel_metadata.create_all(engine)
    engine.dispose()


@pytest.fixture
def pg_url():
    """A throwaway PostgreSQL database, dropped after the test; its SQLAlchemy URL."""
    with postgres_database("crm_test_common") as url:
        yield url


@pytest.fixture
def sample():
    """Read one sample from the default Prometheus registry; None when it is absent.

    Absent is not zero: a gauge the code under test never set must fail a
    test that expects a value, so callers that mean "never counted" say so
    (``not sample(...)``, ``sample(...) or 0``).
    """
    from prometheus_client import REGISTRY

    def read(name, **labels):
        return REGISTRY.get_sample_value(name, labels)

    return read


@pytest.fixture
def unique_name():
    """A service name no other test uses (metrics live in one process-wide registry)."""
    def make(prefix):
        return prefix + "_" + "".join(random.choices(string.ascii_lowercase, k=6))
    return make
