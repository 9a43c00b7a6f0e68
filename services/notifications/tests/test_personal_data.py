"""Personal data rights in notifications: the export, and the scrub on customer.erased."""
import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import select

from crm_common.errors import Forbidden
from crm_common.testing_cast import ALICE, as_admin  # noqa: F401

from notifications import webhooks
from notifications.domain import notify_customer_assigned
from notifications.models import Task, WebhookAttempt, WebhookDelivery
from notifications.personal_data import personal_data, scrub_customer
from notifications.service import NotificationsService
from notifications.tasks import followup_reminder_task

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
NAME = "Wang Xiaoming"
CUSTOMER = str(uuid.uuid4())
OTHER = str(uuid.uuid4())


def envelope(event_type, data, producer="customers"):
    return {"event_id": str(uuid.uuid4()), "type": event_type, "version": 1, "occurred_at": T0.isoformat(),
            "producer": producer, "actor": {"user_id": None, "role": "admin", "team_id": None},
            "request_id": "r-1", "data": data}


def followup(customer_id, name):
    return envelope("followup.logged", {
        "id": str(uuid.uuid4()), "customer_id": customer_id, "customer_name": name, "owner_id": ALICE,
        "owner_team_id": "east", "type": "call", "occurred_at": T0.isoformat(),
        "summary": f"{name} wants a discount", "outcome": None,
        "next_followup_at": (T0 + timedelta(days=2)).isoformat(), "closed_followup_ids": [], "logged_by": ALICE})


def snapshot(customer_id, name):
    return envelope("customer.updated", {"id": customer_id, "name": name, "contact": {"phones": ["+8613800138000"]},
                                         "version": 2})


@pytest.fixture(autouse=True)
def public_dns(monkeypatch):
    monkeypatch.setattr("notifications.ssrf.system_resolver", lambda host, port: ["93.184.216.34"])


@pytest.fixture
def held(session, as_admin):  # noqa: F811
    """A task, a notification and webhook deliveries about the customer, and the same about another."""
    worker = worker_factory(NotificationsService, db=session, context=as_admin)
    worker.create_webhook({"url": "https://hooks.example.com/crm", "event_types": ["customer.*"],
                           "secret": "s3cret-shared-with-the-receiver"})
    for customer_id, name in ((CUSTOMER, NAME), (OTHER, "Han Meimei")):
        followup_reminder_task(session, followup(customer_id, name), now=T0)
        notify_customer_assigned(session, envelope("customer.assigned", {
            "customer_id": customer_id, "name": name, "owner_id": ALICE, "previous_owner_id": None}))
        webhooks.queue_deliveries(session, snapshot(customer_id, name), now=T0)
        webhooks.queue_deliveries(session, snapshot(customer_id, name) | {"type": "customer.created"}, now=T0)
    # One delivery of each customer has gone out; the other is still pending.
    for customer_id in (CUSTOMER, OTHER):
        delivery = next(d for d in session.execute(select(WebhookDelivery)).scalars()
                        if customer_id in d.payload and d.event_type == "customer.updated")
        delivery.status, delivery.finished_at = "succeeded", T0
        session.add(WebhookAttempt(delivery_id=delivery.id, attempted_at=T0, status_code=200))
    session.flush()


def test_export_lists_tasks_notifications_and_deliveries_about_the_customer(session, as_admin, held):  # noqa: F811
    data = personal_data(session, as_admin, CUSTOMER)
    assert [t["title"] for t in data["tasks"]] == [f"Follow up with {NAME}"]
    assert [n["data"]["customer_name"] for n in data["notifications"]] == [NAME]
    assert sorted(d["status"] for d in data["webhook_deliveries"]) == ["pending", "succeeded"]
    assert OTHER not in json.dumps(data)


def test_export_is_for_admins_only(session, held):
    from crm_common.context import RequestContext
    with pytest.raises(Forbidden):
        personal_data(session, RequestContext(user_id=ALICE, role="sales", team_id="east"), CUSTOMER)


def test_erasure_replaces_text_and_deletes_delivered_payloads(session, as_admin, held):  # noqa: F811
    counts = scrub_customer(session, envelope("customer.erased", {"customer_id": CUSTOMER,
                                                                  "name": "Erased customer abcd1234"}))
    assert counts == {"tasks": 1, "notifications": 1, "deliveries": 1}
    data = personal_data(session, as_admin, CUSTOMER)
    assert NAME not in json.dumps(data) and "Xiaoming" not in json.dumps(data)
    [task] = data["tasks"]
    assert task["title"] == "Task about Erased customer abcd1234" and task["description"] == "[erased]"
    assert task["status"] == "open" and task["due_at"]  # the task itself stays
    [notification] = data["notifications"]
    assert notification["data"]["customer_name"] == "[erased]" and notification["data"]["customer_id"] == CUSTOMER
    # The delivered payload is gone (with its attempts); the pending one still goes out.
    assert [d["status"] for d in data["webhook_deliveries"]] == ["pending"]
    assert session.execute(select(WebhookAttempt)).scalars().all() != []  # the other customer's
    # Nothing about the other customer changed.
    other = personal_data(session, as_admin, OTHER)
    assert other["tasks"][0]["title"] == "Follow up with Han Meimei"
    assert len(other["webhook_deliveries"]) == 2


def test_a_redelivered_erasure_is_skipped(session, held):
    event = envelope("customer.erased", {"customer_id": CUSTOMER})
    assert scrub_customer(session, event)["tasks"] == 1
    assert scrub_customer(session, dict(event)) is None
    assert session.execute(select(Task.title).where(Task.customer_id == CUSTOMER)).scalar_one() == \
        "Task about an erased customer"
