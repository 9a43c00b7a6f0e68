import pytest

from crm_common.testing import memory_session, use_test_keyring
from crm_common.testing_cast import ALICE, BOB, MANAGER, ADMIN, as_alice, as_bob, as_east_manager, as_admin, as_viewer  # noqa: F401

from customers.models import Base


@pytest.fixture(autouse=True)
def test_keyring(monkeypatch):
    """Personal data is encrypted under a fixed test keyring, never a key file in var/."""
    use_test_keyring(monkeypatch)


@pytest.fixture
def session():
    session = memory_session(Base.metadata)
    yield session
    session.close()


