"""Tasks: made by hand or from events (a follow-up due, a contract ending), seen by their assignee.

open → done (complete) | cancelled (cancel). A task with remind_at has a
reminder (reminder_state "pending") that notifications.reminders sends.
Plain Python over a SQLAlchemy session; nothing here knows about nameko.
"""
import logging
from datetime import datetime, time, timezone

from sqlalchemy import false, func, literal, select

from crm_common.consumer import first_delivery
from crm_common.errors import Conflict, Forbidden, NotFound, ValidationFailed
from crm_common.pagination import keyset_page
from crm_common.types import utcnow
from crm_common.validation import load
from crm_common.versioning import check_version, flush_versioned

from notifications.dispatch import notify
from notifications.models import Task
from notifications.preferences import CONTRACT_EXPIRING
from notifications.task_schemas import (
    ContractExpiring, FollowupLogged, REMIND_AFTER_DUE, TaskCreate, TaskFilters, TaskOut, TaskUpdate,
)

log = logging.getLogger(__name__)

OPEN, DONE, CANCELLED = "open", "done", "cancelled"
MANUAL, FOLLOWUP, CONTRACT = "manual", "followup", "contract"
PENDING = "pending"
# Roles that may change tasks (their own); viewers only read.
WRITER_ROLES = ("admin", "manager", "sales", "support", "system")
ASSIGNER_ROLES = ("admin", "manager", "system")
# Tasks without a due date sort after every dated one.
NO_DUE_DATE = datetime(9999, 12, 31, tzinfo=timezone.utc)

task_out = TaskOut()
# The records a task may name, and what a missing or invisible one is called.
REFERENCES = {"customer_id": "customer", "opportunity_id": "opportunity", "contract_id": "contract"}


def to_dict(task):
    return task_out.dump(task)


def _sort_due(task):
    return task.due_at or NO_DUE_DATE


class Tasks:
    """The tasks as one caller may use them: sales and support users theirs, managers their team's too,
    admins all. Invisible tasks answer 404 like missing ones."""

    def __init__(self, session, context, require_visible=None):
        """``require_visible(kind, record_id)`` raises NotFound unless the caller may see that customer,
        opportunity or contract (the service asks the owning service, with the caller's context).
        Without it, a task names no such record."""
        self.session = session
        self.context = context
        self.require_visible = require_visible

    # --- who may see and change what ---------------------------------------

    def _visible(self, statement):
        # Not crm_common.permissions.visibility: tasks are personal work, so
        # support and viewer users see their own, not everyone's.
        context = self.context
        if context.is_admin:
            return statement
        mine = Task.assignee_id == context.user_id if context.user_id else false()
        if context.role == "manager" and context.team_id is not None:
            return statement.where(mine | (Task.assignee_team_id == context.team_id))
        return statement.where(mine)

    def _require_writer(self):
        if self.context.role not in WRITER_ROLES:
            raise Forbidden("Your role may not change tasks.")

    def _assignee(self, assignee_id, assignee_team_id):
        """(assignee id, their team) of a task given to ``assignee_id`` (None: the caller)."""
        context = self.context
        if assignee_id is None or assignee_id == context.user_id:
            return context.user_id, context.team_id
        if context.role not in ASSIGNER_ROLES:
            raise ValidationFailed("Only managers and admins give tasks to others.",
                                   {"assignee_id": ["You may not give tasks to another user."]})
        if context.role == "manager" and assignee_team_id != context.team_id:
            raise ValidationFailed("Managers give tasks within their team.",
                                   {"assignee_id": ["Not a member of your team."]})
        return assignee_id, assignee_team_id

    def _check_references(self, data):
        """A task names only records the caller may see; another owner's answers exactly like a
        missing one (422 naming the field), so a task is no way to learn of or reach it."""
        for field, kind in REFERENCES.items():
            record_id = data.get(field)
            if record_id is None:
                continue
            try:
                if self.require_visible is None:
                    raise NotFound(f"No {kind} can be checked here.")
                self.require_visible(kind, str(record_id))
            except NotFound:
                raise ValidationFailed(f"Unknown {kind}.", {field: [f"There is no {kind} with this id."]})

    def find(self, task_id):
        task = self.session.execute(self._visible(select(Task).where(Task.id == str(task_id)))).scalar_one_or_none()
        if task is None:
            raise NotFound(f"Task {task_id} was not found.")
        return task

    # --- reading -------------------------------------------------------------

    def get(self, task_id):
        return to_dict(self.find(task_id))

    def list(self, filters=None, limit=None, cursor=None):
        """The visible tasks matching ``filters``, soonest due first (undated last)."""
        filters = load(TaskFilters, filters or {})
        statement = self._visible(select(Task))
        if "assignee" in filters:
            assignee = filters["assignee"]
            statement = statement.where(Task.assignee_id == (self.context.user_id if assignee == "me" else assignee))
        if "status" in filters:
            statement = statement.where(Task.status == filters["status"])
        if "customer_id" in filters:
            statement = statement.where(Task.customer_id == filters["customer_id"])
        if "due_before" in filters:
            statement = statement.where(Task.due_at < filters["due_before"])
        due = func.coalesce(Task.due_at, literal(NO_DUE_DATE, Task.due_at.type))
        rows, next_cursor = keyset_page(self.session, statement, due, Task.id, False, limit, cursor,
                                        sort_value=_sort_due)
        return {"items": [to_dict(row) for row in rows], "next_cursor": next_cursor}

    # --- writing -------------------------------------------------------------

    def create(self, data, assignee_team_id=None):
        self._require_writer()
        data = load(TaskCreate, data)
        self._check_references(data)
        assignee_id, assignee_team_id = self._assignee(data.pop("assignee_id", None), assignee_team_id)
        now = utcnow()
        task = Task(**data, assignee_id=assignee_id, assignee_team_id=assignee_team_id, status=OPEN,
                    source=MANUAL, reminder_state=PENDING if data.get("remind_at") else None,
                    created_by=self.context.user_id, created_at=now, updated_at=now)
        self.session.add(task)
        self.session.flush()
        return to_dict(task)

    def update(self, task_id, changes, expected_version=None, assignee_team_id=None):
        self._require_writer()
        changes = load(TaskUpdate, changes)
        task = self.find(task_id)
        check_version(task, expected_version, f"Task {task_id}")
        _require_open(task, "changed")
        if "assignee_id" in changes:
            changes["assignee_id"], changes["assignee_team_id"] = self._assignee(changes["assignee_id"],
                                                                                 assignee_team_id)
        changes = {field: value for field, value in changes.items() if getattr(task, field) != value}
        if not changes:
            return to_dict(task)  # nothing new: no new version
        self._check_references(changes)
        due, remind = changes.get("due_at", task.due_at), changes.get("remind_at", task.remind_at)
        if due is not None and remind is not None and remind > due:
            raise ValidationFailed("The input is not valid.", {"remind_at": [REMIND_AFTER_DUE]})
        for field, value in changes.items():
            setattr(task, field, value)
        if "remind_at" in changes:
            # A new reminder time is a new reminder, even when the old one was sent.
            task.reminder_state = PENDING if task.remind_at else None
            task.reminded_at = None
        task.updated_at = utcnow()
        flush_versioned(self.session, f"Task {task_id}")
        return to_dict(task)

    def complete(self, task_id):
        return self._close(task_id, DONE, "completed")

    def cancel(self, task_id):
        return self._close(task_id, CANCELLED, "cancelled")

    def _close(self, task_id, status, doing):
        self._require_writer()
        task = self.find(task_id)
        _require_open(task, doing)
        close(task, status, utcnow())
        flush_versioned(self.session, f"Task {task_id}")
        return to_dict(task)


def _require_open(task, doing):
    if task.status != OPEN:
        raise Conflict(f"Task {task.id} is {task.status}: only an open task can be {doing}.",
                       extra={"current_status": task.status})


def close(task, status, now):
    task.status = status
    task.completed_at = now if status == DONE else None
    task.updated_at = now


# --- tasks made from events -------------------------------------------------------

def followup_reminder_task(session, envelope, now=None):
    """A reminder task for the customer's owner when the follow-up names the next one, and the
    follow-up tasks the new follow-up closes marked done. Returns the new task or None."""
    data = load(FollowupLogged, envelope.get("data"))
    if not first_delivery(session, envelope):
        return None
    now = now or utcnow()
    closed_refs = [str(ref) for ref in data["closed_followup_ids"]]
    if closed_refs:
        earlier = session.execute(select(Task).where(
            Task.source == FOLLOWUP, Task.source_ref.in_(closed_refs), Task.status == OPEN)).scalars().all()
        for task in earlier:
            close(task, DONE, now)
    task = None
    if data["next_followup_at"] is not None and data["owner_id"]:
        name = data["customer_name"] or "a customer"
        due = data["next_followup_at"]
        task = _task_once(session, FOLLOWUP, data["id"], dict(
            title=f"Follow up with {name}"[:200], description=data["summary"], assignee_id=data["owner_id"],
            assignee_team_id=data["owner_team_id"], customer_id=data["customer_id"], due_at=due, remind_at=due,
            reminder_state=PENDING, created_at=now, updated_at=now))
    session.flush()
    return task


def contract_expiry_alert(session, envelope, now=None):
    """A task due on the end date and a notification right away, for the contract's owner.
    Returns (task, notification), or (None, None) when there is nobody to tell."""
    data = load(ContractExpiring, envelope.get("data"))
    if not first_delivery(session, envelope):
        return None, None
    if not data["owner_id"]:
        return None, None
    now = now or utcnow()
    days = data["days_to_end"] if data["days_to_end"] is not None else data["days_left"]
    when = "today" if days <= 0 else f"in {days} day{'s' if days != 1 else ''}"
    title = f"Contract {data['title']} ends {when}"
    task = _task_once(session, CONTRACT, f"{data['id']}:{data['days_left']}", dict(
        title=f"Renew or close: {title}"[:200], assignee_id=data["owner_id"], assignee_team_id=data["owner_team_id"],
        customer_id=data["customer_id"], contract_id=data["id"],
        due_at=datetime.combine(data["end_date"], time(0), tzinfo=timezone.utc), priority="high",
        created_at=now, updated_at=now))
    notification = notify(
        session, data["owner_id"], CONTRACT_EXPIRING, title[:300],
        body=f"The contract ends on {data['end_date'].isoformat()}.",
        data={"contract_id": data["id"], "contract_title": data["title"], "customer_id": data["customer_id"],
              "end_date": data["end_date"].isoformat(), "days_left": data["days_left"], "days_to_end": days,
              "task_id": task.id if task else None},
        now=now, source_event_id=envelope["event_id"])
    return task, notification


def _task_once(session, source, source_ref, columns):
    """A new task from an event, unless that source already made one (the unique source_ref)."""
    existing = session.execute(select(Task).where(Task.source == source, Task.source_ref == source_ref)
                               ).scalar_one_or_none()
    if existing is not None:
        log.info("a %s task for %s exists already", source, source_ref)
        return None
    task = Task(status=OPEN, source=source, source_ref=source_ref, **columns)
    session.add(task)
    session.flush()
    return task
