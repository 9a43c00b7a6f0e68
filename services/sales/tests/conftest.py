import uuid
from datetime import datetime, timezone

import pytest

from crm_common.testing import memory_session
from crm_common.testing_cast import ALICE, ADMIN, as_alice, as_bob, as_east_manager, as_admin, as_viewer  # noqa: F401

from sales.models import Base


@pytest.fixture
def session():
    session = memory_session(Base.metadata)
    yield session
    session.close()


@pytest.fixture
def customer():
    """A customer dict as the customers service puts it in its events."""
    def make(version=1, name="Acme Ltd", owner_id=ALICE, owner_team_id="east", deleted=False,
             **overrides):
        customer_id = overrides.pop("id", None) or str(uuid.uuid4())
        now = datetime(2026, 1, 5, 9, 30, tzinfo=timezone.utc).isoformat()
        data = {
            "id": customer_id, "kind": "company", "name": name, "email": None, "phone": None,
            "owner_id": owner_id, "owner_team_id": owner_team_id, "lifecycle_stage": "lead",
            "lifecycle_changed_at": now, "tier": None, "tags": [], "region": None,
            "industry": None, "source": None, "notes": None, "created_at": now,
            "updated_at": now, "deleted_at": now if deleted else None, "version": version,
        }
        data.update(overrides)
        return data
    return make


@pytest.fixture
def envelope():
    """An event envelope as the customers service's outbox publishes it."""
    def make(event_type, data, actor_id=ADMIN, role="admin"):
        return {
            "event_id": str(uuid.uuid4()),
            "type": event_type,
            "version": 1,
            "occurred_at": datetime.now(timezone.utc).isoformat(),
            "producer": "customers",
            "actor": {"user_id": actor_id, "role": role, "team_id": None},
            "request_id": "r-" + uuid.uuid4().hex[:8],
            "data": data,
        }
    return make


@pytest.fixture
def assigned(envelope):
    def make(customer_id, owner_id, previous_owner_id=None, version=1, name="Acme Ltd",
             owner_team_id="east"):
        return envelope("customer.assigned", {"customer_id": customer_id, "name": name,
                                              "owner_id": owner_id, "owner_team_id": owner_team_id,
                                              "previous_owner_id": previous_owner_id,
                                              "version": version})
    return make
