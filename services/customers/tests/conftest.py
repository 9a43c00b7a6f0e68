import pytest

from crm_common.context import RequestContext
from crm_common.testing import memory_session

from customers.models import Base

ALICE = "00000000-0000-4000-8000-00000000000a"  # sales, team east
BOB = "00000000-0000-4000-8000-00000000000b"    # sales, team west
MANAGER = "00000000-0000-4000-8000-0000000000e1"
ADMIN = "00000000-0000-4000-8000-0000000000ad"


@pytest.fixture
def session():
    session = memory_session(Base.metadata)
    yield session
    session.close()


@pytest.fixture
def as_alice():
    return RequestContext(request_id="r-alice", user_id=ALICE, role="sales", team_id="east")


@pytest.fixture
def as_bob():
    return RequestContext(request_id="r-bob", user_id=BOB, role="sales", team_id="west")


@pytest.fixture
def as_east_manager():
    return RequestContext(request_id="r-m", user_id=MANAGER, role="manager", team_id="east")


@pytest.fixture
def as_admin():
    return RequestContext(request_id="r-admin", user_id=ADMIN, role="admin", team_id=None)


@pytest.fixture
def as_viewer():
    return RequestContext(request_id="r-v", user_id="00000000-0000-4000-8000-0000000000f0",
                          role="viewer")
