import uuid
from datetime import datetime, timezone

import pytest

from crm_common.context import RequestContext
from crm_common.testing import memory_session

from reporting.models import Base

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
def customer():
    """A customer dict as the customers service puts it in its events."""
    def make(version=1, owner_id=ALICE, owner_team_id="east", lifecycle_stage="lead",
             deleted=False, **overrides):
        customer_id = overrides.pop("id", None) or str(uuid.uuid4())
        now = datetime(2026, 1, 5, 9, 30, tzinfo=timezone.utc).isoformat()
        data = {
            "id": customer_id, "kind": "company", "name": "Acme Ltd",
            "email": "buyer@acme.example", "phone": "+8613800138000",
            "owner_id": owner_id, "owner_team_id": owner_team_id,
            "lifecycle_stage": lifecycle_stage, "lifecycle_changed_at": now,
            "tier": "B", "tags": ["vip"], "region": "east", "industry": "retail",
            "source": "referral", "notes": None, "created_at": now, "updated_at": now,
            "deleted_at": now if deleted else None, "version": version,
        }
        data.update(overrides)
        return data
    return make


@pytest.fixture
def envelope():
    """An event envelope as the customers service's outbox publishes it."""
    def make(event_type, data, actor_id=ALICE, role="sales", team_id="east"):
        return {
            "event_id": str(uuid.uuid4()),
            "type": event_type,
            "version": 1,
            "occurred_at": datetime.now(timezone.utc).isoformat(),
            "producer": "customers",
            "actor": {"user_id": actor_id, "role": role, "team_id": team_id},
            "request_id": "r-" + uuid.uuid4().hex[:8],
            "data": data,
        }
    return make
