import uuid
from datetime import datetime, timezone

import pytest

from crm_common.testing import memory_session, use_test_keyring
from crm_common.testing_cast import ALICE, BOB, ADMIN, as_alice, as_bob  # noqa: F401

from notifications.models import Base


@pytest.fixture(autouse=True)
def test_keyring(monkeypatch):
    """Encrypted columns use a fixed test keyring, never a key file under the repository's var/."""
    use_test_keyring(monkeypatch)


@pytest.fixture
def session():
    session = memory_session(Base.metadata)
    yield session
    session.close()


@pytest.fixture
def assigned():
    """A customer.assigned envelope as the customers service's outbox publishes it."""
    def make(owner_id=ALICE, actor_id=ADMIN, name="Acme Ltd", previous_owner_id=None,
             customer_id=None, role="admin"):
        return {
            "event_id": str(uuid.uuid4()),
            "type": "customer.assigned",
            "version": 1,
            "occurred_at": datetime.now(timezone.utc).isoformat(),
            "producer": "customers",
            "actor": {"user_id": actor_id, "role": role, "team_id": None},
            "request_id": "r-" + uuid.uuid4().hex[:8],
            "data": {"customer_id": customer_id or str(uuid.uuid4()), "name": name,
                     "owner_id": owner_id, "previous_owner_id": previous_owner_id},
        }
    return make
