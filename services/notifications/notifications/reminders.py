"""Sending task reminders at remind_at, once, however many instances scan for them.

Every instance's timer runs ``send_due_reminders``. A due task is first
claimed with a conditional UPDATE (pending → claimed, by this instance, now)
that is committed on its own: only the instance whose UPDATE changed the row
(rowcount 1) goes on; on PostgreSQL a concurrent UPDATE waits for that commit
and then no longer matches. The claimer then writes the notification and
marks the task sent, again conditionally on still holding the claim, in one
transaction: an instance that stalled past CLAIM_TIMEOUT and was taken over
rolls its notification back instead of sending a second one. A claim left by
a crashed instance is taken over after CLAIM_TIMEOUT.

Plain Python over a SQLAlchemy session; nothing here knows about nameko.
"""
import logging
import os
import socket
import uuid
from datetime import timedelta

from sqlalchemy import and_, or_, select, update

from crm_common.metrics import count_after_commit
from crm_common.types import utcnow

from notifications.dispatch import notify
from notifications.metrics import REMINDERS_SENT
from notifications.models import Task
from notifications.preferences import TASK_REMINDER

log = logging.getLogger(__name__)

PENDING, CLAIMED, SENT = "pending", "claimed", "sent"
CLAIM_TIMEOUT = timedelta(minutes=3)
BATCH = 100


def new_instance_id():
    """Names this process in the claims it makes (host, pid and a random part: pids repeat)."""
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _due(now):
    stale = now - CLAIM_TIMEOUT
    return (Task.status == "open", Task.remind_at <= now,
            or_(Task.reminder_state == PENDING,
                and_(Task.reminder_state == CLAIMED, Task.reminder_claimed_at < stale)))


def send_due_reminders(session, instance_id, now=None, limit=BATCH):
    """Send the reminders that are due; returns the ids of the tasks this instance reminded."""
    now = now or utcnow()
    due = session.execute(select(Task.id).where(*_due(now)).order_by(Task.remind_at, Task.id).limit(limit)
                          ).scalars().all()
    session.commit()
    reminded = []
    for task_id in due:
        if claim(session, task_id, instance_id, now) and remind(session, task_id, instance_id, now):
            reminded.append(task_id)
    return reminded


def claim(session, task_id, instance_id, now):
    """Take the task's reminder for ``instance_id``; True when this call did. Commits."""
    claimed = session.execute(
        update(Task).where(Task.id == task_id, *_due(now))
        .values(reminder_state=CLAIMED, reminder_claimed_by=instance_id, reminder_claimed_at=now)
        .execution_options(synchronize_session=False)).rowcount == 1
    session.commit()
    return claimed


def remind(session, task_id, instance_id, now):
    """Notify the assignee of a task claimed by ``instance_id`` and mark it sent, in one transaction;
    False (and nothing written) when the claim was lost meanwhile. Commits."""
    task = session.execute(select(Task).where(Task.id == task_id)
                           .execution_options(populate_existing=True)).scalar_one()
    notify(session, task.assignee_id, TASK_REMINDER, f"Reminder: {task.title}"[:300],
           body=_body(task),
           data={"task_id": task.id, "due_at": task.due_at.isoformat() if task.due_at else None,
                 "customer_id": task.customer_id, "contract_id": task.contract_id,
                 "opportunity_id": task.opportunity_id, "priority": task.priority},
           now=now)
    marked = session.execute(
        update(Task).where(Task.id == task_id, Task.reminder_state == CLAIMED,
                           Task.reminder_claimed_by == instance_id, Task.reminder_claimed_at == now)
        .values(reminder_state=SENT, reminded_at=now).execution_options(synchronize_session=False)).rowcount == 1
    if not marked:
        log.warning("reminder of task %s was taken over by another instance; not sending it twice", task_id)
        session.rollback()
        return False
    count_after_commit(session, REMINDERS_SENT)
    session.commit()
    return True


def _body(task):
    if task.due_at is None:
        return task.description
    due = f"Due {task.due_at.strftime('%Y-%m-%d %H:%M')} UTC."
    return f"{due}\n\n{task.description}" if task.description else due
