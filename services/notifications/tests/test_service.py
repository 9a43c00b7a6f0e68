"""The service's entrypoints, through nameko's worker_factory, and its migrations."""
import pytest
from nameko.testing.services import worker_factory

from crm_common.errors import NotFound
from crm_common.testing import schema_drift

from notifications.models import Base
from notifications.service import NotificationsService


def test_assignment_reaches_the_owners_inbox_once(session, as_alice, as_bob, assigned):
    alice = worker_factory(NotificationsService, db=session, context=as_alice)
    bob = worker_factory(NotificationsService, db=session, context=as_bob)
    event = assigned()
    alice.on_customer_assigned(event)
    alice.on_customer_assigned(event)  # redelivered
    assert alice.unread_count() == 1
    page = alice.list_notifications()
    assert page["next_cursor"] is None
    [item] = page["items"]
    assert item["data"]["customer_id"] == event["data"]["customer_id"]

    assert bob.list_notifications() == {"items": [], "next_cursor": None}
    with pytest.raises(NotFound):
        bob.mark_read(item["id"])
    assert alice.mark_read(item["id"])["read"] is True
    assert alice.unread_count() == 0


def test_own_assignment_is_not_notified(session, as_alice, assigned):
    alice = worker_factory(NotificationsService, db=session, context=as_alice)
    alice.on_customer_assigned(assigned(owner_id=as_alice.user_id, actor_id=as_alice.user_id))
    assert alice.unread_count() == 0


def test_migrations_match_the_models(tmp_path):
    assert schema_drift("notifications.migrations", Base.metadata, f"sqlite:///{tmp_path}/n.db") == []
