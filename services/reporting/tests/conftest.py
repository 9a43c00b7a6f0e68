import uuid
from datetime import datetime, timezone

import pytest

from crm_common.testing import memory_session
from crm_common.testing_cast import ALICE, BOB, MANAGER, ADMIN, as_alice, as_bob, as_east_manager, as_admin  # noqa: F401

from reporting.models import Base


@pytest.fixture
def session():
    session = memory_session(Base.metadata)
    yield session
    session.close()


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
