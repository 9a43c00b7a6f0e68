import pytest

from crm_common.testing import memory_session
from crm_common.testing_cast import ALICE, BOB, MANAGER, ADMIN, as_alice, as_bob, as_east_manager, as_admin, as_viewer  # noqa: F401

from customers.models import Base


@pytest.fixture
def session():
    session = memory_session(Base.metadata)
    yield session
    session.close()


