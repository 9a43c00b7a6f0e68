"""Reminders go out at remind_at, once, even with two instances scanning one database."""
from datetime import datetime, timedelta, timezone

import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import func, select

from crm_common.db import kernel_metadata, make_engine, make_session_factory
from crm_common.testing_cast import ALICE

from notifications.domain import Inbox
from notifications.models import Base, Delivery, Notification, Task
from notifications.reminders import CLAIM_TIMEOUT, claim, remind, send_due_reminders
from notifications.service import NotificationsService
from notifications.tasks import Tasks

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def two_sessions(tmp_path):
    """Two instances' sessions on one database file (each with its own connection)."""
    engine = make_engine(f"sqlite:///{tmp_path}/notifications.db")
    Base.metadata.create_all(engine)
    kernel_metadata.create_all(engine)
    factory = make_session_factory(engine)
    first, second = factory(), factory()
    yield first, second
    first.close()
    second.close()
    engine.dispose()


def reminders_of(session, user_id=ALICE):
    return session.execute(select(Notification.title).where(
        Notification.user_id == user_id, Notification.type == "task.reminder")).scalars().all()


def make_task(session, context, title, remind_at, due_at=None):
    task = Tasks(session, context).create({"title": title, "remind_at": remind_at.isoformat(),
                                           **({"due_at": due_at.isoformat()} if due_at else {})})
    session.commit()
    return task


def test_a_reminder_waits_for_remind_at_then_reaches_the_inbox_once(session, as_alice):
    task = make_task(session, as_alice, "Call Acme", T0, due_at=T0 + timedelta(hours=1))
    assert send_due_reminders(session, "i-1", now=T0 - timedelta(seconds=1)) == []
    assert reminders_of(session) == []
    assert send_due_reminders(session, "i-1", now=T0) == [task["id"]]
    assert send_due_reminders(session, "i-1", now=T0 + timedelta(minutes=10)) == []
    [item] = Inbox(session, as_alice).list()["items"]
    assert (item["title"], item["type"], item["data"]["task_id"]) == ("Reminder: Call Acme", "task.reminder",
                                                                       task["id"])
    assert "Due 2026-03-02 10:00 UTC." in item["body"]
    row = session.get(Task, task["id"])
    assert (row.reminder_state, row.reminded_at, row.reminder_claimed_by) == ("sent", T0, "i-1")
    assert Tasks(session, as_alice).get(task["id"])["reminded_at"] is not None


def test_closed_tasks_are_not_reminded(session, as_alice):
    task = make_task(session, as_alice, "Never mind", T0)
    Tasks(session, as_alice).cancel(task["id"])
    session.commit()
    assert send_due_reminders(session, "i-1", now=T0 + timedelta(hours=1)) == []
    assert reminders_of(session) == []


def test_two_instances_scanning_together_send_each_reminder_once(two_sessions, as_alice):
    first, second = two_sessions
    ids = [make_task(first, as_alice, f"Task {n}", T0)["id"] for n in range(6)]
    # Both found the same due tasks; their claims interleave task by task, in turns.
    for n, task_id in enumerate(ids):
        order = [(first, "instance-a"), (second, "instance-b")][::1 if n % 2 else -1]
        won = [(session, name) for session, name in order if claim(session, task_id, name, T0)]
        assert len(won) == 1
        assert remind(won[0][0], task_id, won[0][1], T0)
    # A later scan by either finds nothing left to send.
    assert send_due_reminders(first, "instance-a", now=T0 + timedelta(minutes=1)) == []
    assert send_due_reminders(second, "instance-b", now=T0 + timedelta(minutes=1)) == []
    assert sorted(reminders_of(second)) == [f"Reminder: Task {n}" for n in range(6)]


def test_whole_scans_of_two_instances_do_not_repeat_each_other(two_sessions, as_alice):
    first, second = two_sessions
    for n in range(5):
        make_task(first, as_alice, f"Task {n}", T0)
    a = send_due_reminders(first, "instance-a", now=T0)
    b = send_due_reminders(second, "instance-b", now=T0)
    assert len(a) == 5 and b == []
    assert len(reminders_of(first)) == 5


def test_a_claim_made_by_another_instance_is_respected_until_it_is_stale(two_sessions, as_alice):
    first, second = two_sessions
    task = make_task(first, as_alice, "Call Acme", T0)
    assert claim(first, task["id"], "instance-a", T0)  # a claims, then stalls
    assert not claim(second, task["id"], "instance-b", T0)
    assert send_due_reminders(second, "instance-b", now=T0 + CLAIM_TIMEOUT - timedelta(seconds=1)) == []
    # a seems dead: b takes over and sends it ...
    assert send_due_reminders(second, "instance-b", now=T0 + CLAIM_TIMEOUT + timedelta(seconds=1)) == [task["id"]]
    # ... and when a wakes up it finds its claim lost and sends nothing.
    assert remind(first, task["id"], "instance-a", T0) is False
    assert reminders_of(first) == ["Reminder: Call Acme"]
    assert first.execute(select(func.count()).select_from(Notification)).scalar() == 1


def test_the_timer_entrypoint_reminds_and_keeps_the_email_for_a_user_not_known_yet(session, as_alice):
    make_task(session, as_alice, "Overdue call", datetime.now(timezone.utc) - timedelta(minutes=1))
    worker_factory(NotificationsService, db=session).send_reminders_and_deliveries()
    assert reminders_of(session) == ["Reminder: Overdue call"]
    [delivery] = session.query(Delivery).all()
    assert (delivery.channel, delivery.status, delivery.attempts) == ("email", "pending", 1)
