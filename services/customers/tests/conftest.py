import pytest

from crm_common.testing import memory_session, use_test_keyring
from crm_common.testing_cast import ALICE, BOB, MANAGER, ADMIN, as_alice, as_bob, as_east_manager, as_admin, as_viewer  # noqa: F401

from customers.models import Base


def model_drift(changes):
    """Schema drift but the keyword search indexes, which are not tables of the models on purpose:
    PostgreSQL's are made by migrations only, SQLite's FTS5 objects by DDL beside the models
    (models.SQLITE_SEARCH_DDL; test_search checks that the migrations make the same)."""
    return [change for change in changes
            if not (change[0] == "remove_index" and change[1].name.startswith("ix_customers_search_"))
            and not (change[0] == "remove_table" and change[1].name.startswith("customer_search"))]


@pytest.fixture(autouse=True)
def test_keyring(monkeypatch):
    """Personal data is encrypted under a fixed test keyring, never a key file in var/."""
    use_test_keyring(monkeypatch)


@pytest.fixture
def session():
    session = memory_session(Base.metadata)
    yield session
    session.close()


