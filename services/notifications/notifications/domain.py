"""The in-app inbox: notifications made from events, read by their user.

Plain Python over a SQLAlchemy session; nothing here knows about nameko.
"""
import logging

from sqlalchemy import func, select, update

from crm_common.consumer import first_delivery
from crm_common.context import RequestContext
from crm_common.errors import Forbidden, NotFound, ValidationFailed
from crm_common.pagination import check_limit, keyset_page
from crm_common.types import utcnow
from crm_common.validation import load

from notifications.dispatch import notify
from notifications.models import Notification
from notifications.schemas import Actor, CustomerAssigned, ImportedCustomers, NotificationOut

log = logging.getLogger(__name__)

CUSTOMER_ASSIGNED = "customer.assigned"
CUSTOMERS_IMPORTED = "customer.imported"
# A notification lists this many of the customers it is about; ``count`` says how many in all.
MAX_IDS_IN_NOTIFICATION = 100

notification_out = NotificationOut()


def to_dict(notification):
    return notification_out.dump(notification)


def notify_customer_assigned(session, envelope):
    """Tell the new owner of a customer about it, once per event; the Notification or None.

    Nobody is told when the customer was left without an owner, or when the
    owner assigned it to themselves: no notification for your own action.
    """
    data = load(CustomerAssigned, envelope.get("data"))
    actor = load(Actor, envelope.get("actor") or {})
    if not first_delivery(session, envelope):
        return None
    owner_id = data["owner_id"]
    if not owner_id or actor["user_id"] == owner_id:
        return None
    name = data["name"] or "a customer"
    return notify(
        session, owner_id, CUSTOMER_ASSIGNED,
        title=f"Customer {name} was assigned to you",
        body=f"You are now the owner of {name}.",
        data={
            "customer_id": data["customer_id"],
            "customer_name": data["name"],
            "previous_owner_id": data["previous_owner_id"],
            "assigned_by": actor["user_id"],
        },
        source_event_id=envelope["event_id"],
    )


def notify_customers_imported(session, envelope):
    """Tell each owner given customers by an import, with one notification per owner and batch
    (not one per customer: an import can hand someone thousands). Returns the notifications."""
    batch = load(ImportedCustomers, envelope.get("data"))
    actor = load(Actor, envelope.get("actor") or {})
    if not first_delivery(session, envelope):
        return []
    by_owner = {}
    for customer in batch["customers"]:
        if customer["owner_id"] and customer["owner_id"] != actor["user_id"]:
            by_owner.setdefault(customer["owner_id"], []).append(customer)
    notifications = []
    for owner_id, customers in by_owner.items():
        count = len(customers)
        first = customers[0]["name"] or "a customer"
        notifications.append(notify(
            session, owner_id, CUSTOMERS_IMPORTED,
            title=f"Customer {first} was assigned to you" if count == 1
            else f"{count} imported customers were assigned to you",
            body=f"An import made you the owner of {first}" + (f" and {count - 1} more." if count > 1 else "."),
            data={
                "customer_ids": [customer["id"] for customer in customers[:MAX_IDS_IN_NOTIFICATION]],
                "count": count,
                "assigned_by": actor["user_id"],
            },
            source_event_id=envelope["event_id"],
        ))
    return notifications


# An inbox cursor names its section, then the keyset cursor inside it:
# "u.<cursor>" in the unread part, "r.<cursor>" in the read part ("r." is the
# read part's first page). The sections are two single-key keysets
# (created_at, id) because crm_common.pagination.keyset_page orders by one
# column and the id; each section has its own index. A notification read while
# someone pages can only move to a later section, so nothing is skipped (it
# may show up a second time, as read).
UNREAD, READ = "u", "r"
SEPARATOR = "."


def _inbox_cursor(section, inner=""):
    return f"{section}{SEPARATOR}{inner or ''}"


def _split_cursor(cursor):
    if not cursor:
        return UNREAD, None
    section, separator, inner = str(cursor).partition(SEPARATOR)
    if section not in (UNREAD, READ) or not separator:
        raise ValidationFailed("cursor is not valid", {"cursor": ["Not a valid cursor."]})
    return section, inner or None


class Inbox:
    """One user's notifications: the user is the caller, always."""

    def __init__(self, session, context: RequestContext):
        self.session = session
        self.context = context
        if not context.user_id:
            raise Forbidden("Notifications belong to a signed-in user.")

    def _mine(self):
        return select(Notification).where(Notification.user_id == self.context.user_id)

    def _page(self, statement, limit, cursor):
        return keyset_page(self.session, statement, Notification.created_at, Notification.id,
                           True, limit, cursor)

    def list(self, limit=None, cursor=None):
        """Unread first, then read; newest first within each: {"items", "next_cursor"}."""
        limit = check_limit(limit)
        section, inner = _split_cursor(cursor)
        unread = self._mine().where(Notification.read_at.is_(None))
        read = self._mine().where(Notification.read_at.is_not(None))
        items = []
        if section == UNREAD:
            rows, next_inner = self._page(unread, limit, inner)
            items += rows
            if next_inner:
                return self._result(items, _inbox_cursor(UNREAD, next_inner))
            inner = None  # the unread part is done: go on with the read part
        room = limit - len(items)
        if room == 0:
            more = self.session.execute(read.with_only_columns(Notification.id).limit(1)).first()
            return self._result(items, _inbox_cursor(READ) if more else None)
        rows, next_inner = self._page(read, room, inner)
        items += rows
        return self._result(items, _inbox_cursor(READ, next_inner) if next_inner else None)

    @staticmethod
    def _result(rows, next_cursor):
        return {"items": [to_dict(row) for row in rows], "next_cursor": next_cursor}

    def unread_count(self):
        return self.session.execute(
            select(func.count()).select_from(Notification).where(
                Notification.user_id == self.context.user_id, Notification.read_at.is_(None))
        ).scalar_one()

    def mark_all_read(self):
        """Mark every unread notification of the caller read; {"marked": how many}."""
        marked = self.session.execute(
            update(Notification).where(Notification.user_id == self.context.user_id, Notification.read_at.is_(None))
            .values(read_at=utcnow()).execution_options(synchronize_session=False)).rowcount
        return {"marked": marked}

    def mark_read(self, notification_id):
        """Mark one of the caller's notifications read (again is harmless); its new state."""
        notification = self.session.execute(
            self._mine().where(Notification.id == str(notification_id))
        ).scalar_one_or_none()
        if notification is None:
            # Someone else's notification answers exactly like a missing one.
            raise NotFound(f"Notification {notification_id} was not found.")
        if notification.read_at is None:
            notification.read_at = utcnow()
            self.session.flush()
        return to_dict(notification)
