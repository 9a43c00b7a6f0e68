"""Tasks by hand and from events: who sees them, what may change, what events make and close."""
import uuid
from datetime import date, datetime, timedelta, timezone

import pytest
from nameko.testing.services import worker_factory

from crm_common.context import RequestContext
from crm_common.errors import Conflict, Forbidden, NotFound, ValidationFailed, VersionMismatch
from crm_common.testing_cast import ALICE, BOB, MANAGER
from crm_common.testing_cast import as_admin, as_east_manager, as_viewer  # noqa: F401 (fixtures)

from notifications.domain import Inbox
from notifications.models import Delivery, Task
from notifications.service import NotificationsService
from notifications.tasks import Tasks, contract_expiry_alert, followup_reminder_task

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
CAROL = "00000000-0000-4000-8000-0000000000c0"  # sales, team east


def iso(moment):
    return moment.isoformat()


def envelope(event_type, data, producer):
    return {"event_id": str(uuid.uuid4()), "type": event_type, "version": 1, "occurred_at": iso(T0),
            "producer": producer, "actor": {"user_id": ALICE, "role": "sales", "team_id": "east"},
            "request_id": "r-1", "data": data}


def followup(followup_id=None, next_at=T0 + timedelta(days=2), closed=(), owner=ALICE, name="Acme Ltd"):
    return envelope("followup.logged", {
        "id": followup_id or str(uuid.uuid4()), "customer_id": str(uuid.uuid4()), "customer_name": name,
        "owner_id": owner, "owner_team_id": "east", "type": "call", "occurred_at": iso(T0),
        "summary": "Talked about the renewal", "outcome": None,
        "next_followup_at": iso(next_at) if next_at else None, "closed_followup_ids": list(closed),
        "logged_by": owner}, "customers")


def expiring(days_left=7, days_to_end=7, owner=ALICE, contract_id=None):
    return envelope("contract.expiring", {
        "id": contract_id or str(uuid.uuid4()), "title": "Maintenance 2027", "customer_id": str(uuid.uuid4()),
        "owner_id": owner, "owner_team_id": "east", "end_date": (T0.date() + timedelta(days=days_to_end)).isoformat(),
        "value": "88000.50", "currency": "CNY", "status": "active", "days_left": days_left,
        "days_to_end": days_to_end}, "sales")


def test_a_task_is_the_callers_by_default_and_invisible_to_other_sales(session, as_alice, as_bob):
    task = Tasks(session, as_alice).create({"title": "  Call Acme  ", "due_at": iso(T0), "priority": "high"})
    assert (task["title"], task["assignee_id"], task["assignee_team_id"], task["status"], task["priority"],
            task["source"], task["version"]) == ("Call Acme", ALICE, "east", "open", "high", "manual", 1)
    assert Tasks(session, as_alice).get(task["id"])["id"] == task["id"]
    with pytest.raises(NotFound):
        Tasks(session, as_bob).get(task["id"])
    assert Tasks(session, as_bob).list()["items"] == []


def test_managers_see_their_teams_tasks_and_admins_all(session, as_alice, as_bob, as_east_manager, as_admin):
    east = Tasks(session, as_alice).create({"title": "East work"})
    west = Tasks(session, as_bob).create({"title": "West work"})
    assert [t["id"] for t in Tasks(session, as_east_manager).list()["items"]] == [east["id"]]
    assert {t["id"] for t in Tasks(session, as_admin).list()["items"]} == {east["id"], west["id"]}


def test_sales_may_not_give_tasks_to_others_managers_only_within_their_team(session, as_alice, as_east_manager):
    with pytest.raises(ValidationFailed) as refused:
        Tasks(session, as_alice).create({"title": "For Bob", "assignee_id": BOB}, "west")
    assert "assignee_id" in refused.value.errors
    with pytest.raises(ValidationFailed) as outside:
        Tasks(session, as_east_manager).create({"title": "For Bob", "assignee_id": BOB}, "west")
    assert "assignee_id" in outside.value.errors
    given = Tasks(session, as_east_manager).create({"title": "For Carol", "assignee_id": CAROL}, "east")
    assert (given["assignee_id"], given["assignee_team_id"], given["created_by"]) == (CAROL, "east", MANAGER)


def test_viewers_may_not_write_tasks(session, as_viewer):
    with pytest.raises(Forbidden):
        Tasks(session, as_viewer).create({"title": "Nope"})


@pytest.mark.parametrize("body, field", [
    ({}, "title"),
    ({"title": ""}, "title"),
    ({"title": "x", "priority": "urgent"}, "priority"),
    ({"title": "x", "due_at": "2026-03-02T09:00:00Z", "remind_at": "2026-03-02T10:00:00Z"}, "remind_at"),
    ({"title": "x", "customer_id": "not-a-uuid"}, "customer_id"),
    ({"title": "x", "status": "done"}, "status"),
])
def test_bad_task_input_names_the_field(session, as_alice, body, field):
    with pytest.raises(ValidationFailed) as refused:
        Tasks(session, as_alice).create(body)
    assert field in refused.value.errors


def test_list_filters_and_pages_soonest_due_first(session, as_alice):
    tasks = Tasks(session, as_alice, require_visible=lambda kind, record_id: None)  # Alice sees the customer
    customer = str(uuid.uuid4())
    made = [tasks.create({"title": f"T{i}", "due_at": iso(T0 + timedelta(hours=h)),
                          **({"customer_id": customer} if i % 2 else {})})
            for i, h in enumerate((5, 1, 3, 2))]
    undated = tasks.create({"title": "Someday"})
    tasks.complete(made[0]["id"])
    titles, cursor = [], None
    while True:
        page = tasks.list({"assignee": "me"}, limit=2, cursor=cursor)
        titles += [t["title"] for t in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert titles == ["T1", "T3", "T2", "T0", "Someday"]
    assert [t["title"] for t in tasks.list({"status": "open"})["items"]] == ["T1", "T3", "T2", "Someday"]
    assert [t["title"] for t in tasks.list({"customer_id": customer})["items"]] == ["T1", "T3"]
    assert [t["title"] for t in tasks.list({"due_before": iso(T0 + timedelta(hours=3))})["items"]] == ["T1", "T3"]
    assert undated["due_at"] is None
    with pytest.raises(ValidationFailed) as refused:
        tasks.list({"status": "finished"})
    assert "status" in refused.value.errors


def test_patch_honours_the_version_and_only_open_tasks_change(session, as_alice):
    tasks = Tasks(session, as_alice)
    task = tasks.create({"title": "Draft the offer", "due_at": iso(T0)})
    changed = tasks.update(task["id"], {"title": "Send the offer"}, expected_version=1)
    assert (changed["title"], changed["version"]) == ("Send the offer", 2)
    with pytest.raises(VersionMismatch):
        tasks.update(task["id"], {"title": "Again"}, expected_version=1)
    with pytest.raises(ValidationFailed) as late:
        tasks.update(task["id"], {"remind_at": iso(T0 + timedelta(hours=1))})
    assert "remind_at" in late.value.errors
    done = tasks.complete(task["id"])
    assert done["status"] == "done" and done["completed_at"] is not None
    with pytest.raises(Conflict):
        tasks.update(task["id"], {"title": "Too late"})
    with pytest.raises(Conflict):
        tasks.cancel(task["id"])


def test_a_new_remind_at_rearms_the_reminder(session, as_alice):
    tasks = Tasks(session, as_alice)
    task = tasks.create({"title": "Call back", "remind_at": iso(T0)})
    row = session.get(Task, task["id"])
    assert row.reminder_state == "pending"
    row.reminder_state, row.reminded_at = "sent", T0
    tasks.update(task["id"], {"remind_at": iso(T0 + timedelta(days=1))})
    assert (row.reminder_state, row.reminded_at) == ("pending", None)
    tasks.update(task["id"], {"remind_at": None})
    assert row.reminder_state is None


def test_a_followup_with_a_next_date_makes_one_reminder_task_for_the_owner(session, as_alice):
    event = followup(name="Acme Ltd")
    task = followup_reminder_task(session, event, now=T0)
    followup_reminder_task(session, dict(event), now=T0)  # redelivered
    [listed] = Tasks(session, as_alice).list()["items"]
    assert listed["id"] == task.id
    assert (listed["title"], listed["source"], listed["source_ref"], listed["assignee_team_id"]) == \
        ("Follow up with Acme Ltd", "followup", event["data"]["id"], "east")
    assert listed["due_at"] == listed["remind_at"] == event["data"]["next_followup_at"]
    assert task.reminder_state == "pending"


def test_the_next_followup_closes_the_earlier_followup_task(session, as_alice):
    first = followup()
    followup_reminder_task(session, first, now=T0)
    followup_reminder_task(session, followup(closed=[first["data"]["id"]]), now=T0 + timedelta(days=1))
    statuses = {t["source_ref"]: t["status"] for t in Tasks(session, as_alice).list()["items"]}
    assert statuses[first["data"]["id"]] == "done"
    assert list(statuses.values()).count("open") == 1


def test_a_followup_without_next_date_or_owner_makes_no_task(session, as_admin):
    assert followup_reminder_task(session, followup(next_at=None), now=T0) is None
    assert followup_reminder_task(session, followup(owner=None), now=T0) is None
    assert Tasks(session, as_admin).list()["items"] == []


def test_a_contract_expiring_makes_a_task_and_tells_the_owner_at_once(session, as_alice):
    event = expiring(days_left=7, days_to_end=7)
    task, notification = contract_expiry_alert(session, event, now=T0)
    assert contract_expiry_alert(session, dict(event), now=T0) == (None, None)  # redelivered
    cid = event["data"]["id"]
    assert (task.source, task.source_ref, task.contract_id, task.assignee_id) == ("contract", f"{cid}:7", cid, ALICE)
    assert task.due_at.date() == date(2026, 3, 9)
    [item] = Inbox(session, as_alice).list()["items"]
    assert (item["type"], item["title"]) == ("contract.expiring", "Contract Maintenance 2027 ends in 7 days")
    assert item["data"]["task_id"] == task.id
    # contract.expiring goes by email too unless the owner said otherwise.
    [delivery] = session.query(Delivery).all()
    assert (delivery.notification_id, delivery.channel, delivery.status) == (notification.id, "email", "pending")


def test_each_notice_of_one_contract_is_its_own_task(session, as_alice):
    cid = str(uuid.uuid4())
    contract_expiry_alert(session, expiring(30, 30, contract_id=cid), now=T0)
    contract_expiry_alert(session, expiring(1, 1, contract_id=cid), now=T0)
    assert sorted(t["source_ref"] for t in Tasks(session, as_alice).list()["items"]) == [f"{cid}:1", f"{cid}:30"]
    assert sorted(item["title"] for item in Inbox(session, as_alice).list()["items"]) == [
        "Contract Maintenance 2027 ends in 1 day", "Contract Maintenance 2027 ends in 30 days"]


def test_task_entrypoints_and_read_all(session, as_alice):
    alice = worker_factory(NotificationsService, db=session, context=as_alice)
    task = alice.create_task({"title": "Call Acme"})
    assert alice.get_task(task["id"])["title"] == "Call Acme"
    assert alice.update_task(task["id"], {"priority": "low"}, 1)["priority"] == "low"
    assert alice.cancel_task(task["id"])["status"] == "cancelled"
    assert alice.list_tasks({"status": "cancelled"})["items"][0]["id"] == task["id"]
    alice.on_contract_expiring(expiring())
    alice.on_contract_expiring(expiring(days_left=30, days_to_end=29))
    assert alice.unread_count() == 2
    assert alice.mark_all_read() == {"marked": 2}
    assert alice.unread_count() == 0
    assert alice.mark_all_read() == {"marked": 0}
    other = RequestContext(request_id="r", user_id=BOB, role="sales", team_id="west")
    assert Inbox(session, other).unread_count() == 0
