"""The callers service tests act as: one pytest fixture per role.

A service's tests/conftest.py imports the fixtures it uses (importing a
fixture function into a conftest registers it) and the ids to assert on:

    from crm_common.testing_cast import ALICE, as_alice  # noqa: F401
"""
import pytest

from crm_common.context import RequestContext

ALICE = "00000000-0000-4000-8000-00000000000a"  # sales, team east
BOB = "00000000-0000-4000-8000-00000000000b"    # sales, team west
MANAGER = "00000000-0000-4000-8000-0000000000e1"  # manager, team east
ADMIN = "00000000-0000-4000-8000-0000000000ad"
VIEWER = "00000000-0000-4000-8000-0000000000f0"


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
    return RequestContext(request_id="r-v", user_id=VIEWER, role="viewer")
