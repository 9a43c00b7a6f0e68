"""The service's entrypoints, through nameko's worker_factory, and its migrations."""
import pytest
from nameko.testing.services import worker_factory

from crm_common.errors import NotFound, ValidationFailed
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


def test_the_service_itself_keeps_tasks_off_records_the_caller_may_not_see(session, as_alice, as_bob):
    """No gateway here: Alice's task may not name Bob's customer, opportunity or contract (the owning
    services answer NotFound for her, as for a missing record), nor may she reach Bob's task."""
    bobs = {"customer_id": "44444444-4444-4444-8444-444444444444",
            "opportunity_id": "55555555-5555-4555-8555-555555555555",
            "contract_id": "66666666-6666-4666-8666-666666666666"}
    bob = worker_factory(NotificationsService, db=session, context=as_bob)
    task = bob.create_task({"title": "Bob's call", **bobs})
    alice = worker_factory(NotificationsService, db=session, context=as_alice)
    for proxy in (alice.customers.get_customer, alice.sales.get_opportunity, alice.sales.get_contract):
        proxy.side_effect = NotFound("not found")

    for field, record_id in bobs.items():
        with pytest.raises(ValidationFailed) as refused:
            alice.create_task({"title": "Poached", field: record_id})
        assert list(refused.value.errors) == [field]
    mine = alice.create_task({"title": "Mine"})
    with pytest.raises(ValidationFailed):
        alice.update_task(mine["id"], {"customer_id": bobs["customer_id"]})
    alice.customers.get_customer.assert_called_with(bobs["customer_id"])

    for attempt in (lambda: alice.get_task(task["id"]), lambda: alice.complete_task(task["id"]),
                    lambda: alice.cancel_task(task["id"]),
                    lambda: alice.update_task(task["id"], {"title": "Mine"})):
        with pytest.raises(NotFound):
            attempt()
    assert alice.list_tasks({"customer_id": bobs["customer_id"]})["items"] == []
    assert alice.list_tasks({"assignee": as_bob.user_id})["items"] == []
    assert bob.get_task(task["id"]) == task
