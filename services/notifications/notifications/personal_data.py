"""A person's data rights in notifications: what is held about a customer, and scrubbing it on erasure.

About a customer here are: tasks naming it (``customer_id``: follow-up
reminders, contract expiry tasks, manual ones), inbox notifications whose
data names it (assignments, imports, contract expiry, task reminders), and
webhook deliveries whose payload (the event as sent, encrypted at rest) names
it. On ``customer.erased``:

- tasks stay (someone may still have to act) with their text replaced: the
  title says it is about an erased customer, the description is "[erased]";
- notifications stay (their read state is the user's) with a neutral title,
  no body, and no customer or contract name in their data;
- finished webhook deliveries (succeeded or given up) that carry the customer
  are deleted with their attempts; pending ones still go out (the receiver
  then gets customer.updated with the anonymised snapshot, and
  customer.erased, after them).

Plain Python over a SQLAlchemy session; nothing here knows about nameko.
"""
import logging

from marshmallow import EXCLUDE, Schema, fields, validate
from sqlalchemy import Text, cast, delete, select

from crm_common.consumer import first_delivery
from crm_common.errors import Forbidden
from crm_common.outbox import delete_published_mentioning
from crm_common.types import utcnow
from crm_common.validation import load

from notifications.domain import to_dict as notification_dict
from notifications.models import Notification, Task, WebhookDelivery
from notifications.tasks import to_dict as task_dict

log = logging.getLogger(__name__)

ERASED_TEXT = "[erased]"
ERASED_CUSTOMER = "an erased customer"
# Data keys of a notification that may name the customer (or its contract).
NAMING_KEYS = ("customer_name", "contract_title")
FINISHED = ("succeeded", "failed")
# Webhook deliveries are read (and decrypted) this many at a time while looking for the customer's.
DELIVERY_SCAN_BATCH = 500


class CustomerErased(Schema):
    class Meta:
        unknown = EXCLUDE

    customer_id = fields.String(required=True, validate=validate.Length(min=1, max=36))
    name = fields.String(load_default=None, validate=validate.Length(max=200))


def _mentions(customer_id):
    # The id is a UUID: no LIKE wildcards in it. JSON as text works on SQLite and PostgreSQL.
    return cast(Notification.data, Text).like(f"%{customer_id}%")


def personal_data(session, context, customer_id):
    """{"tasks", "notifications", "webhook_deliveries"} about the customer (deliveries as metadata:
    their payloads are the events whose content the other services export)."""
    if not context.is_admin:
        raise Forbidden("Only admins handle personal data requests.")
    customer_id = str(customer_id)
    tasks = session.execute(select(Task).where(Task.customer_id == customer_id)
                            .order_by(Task.created_at, Task.id)).scalars()
    notifications = session.execute(select(Notification).where(_mentions(customer_id))
                                    .order_by(Notification.created_at, Notification.id)).scalars()
    return {
        "tasks": [task_dict(task) for task in tasks],
        "notifications": [{**notification_dict(row), "user_id": row.user_id} for row in notifications],
        "webhook_deliveries": [
            {"id": delivery.id, "webhook_id": delivery.webhook_id, "event_id": delivery.event_id,
             "event_type": delivery.event_type, "status": delivery.status,
             "created_at": delivery.created_at.isoformat()}
            for delivery in deliveries_about(session, customer_id)],
    }


def deliveries_about(session, customer_id, statuses=None, batch_size=DELIVERY_SCAN_BATCH):
    """The webhook deliveries whose payload names the customer. Payloads are encrypted, so they
    are read in batches (keyset on created_at, id) and matched after decryption."""
    found, after = [], None
    while True:
        statement = select(WebhookDelivery)
        if statuses:
            statement = statement.where(WebhookDelivery.status.in_(statuses))
        if after is not None:
            statement = statement.where(
                (WebhookDelivery.created_at > after[0])
                | ((WebhookDelivery.created_at == after[0]) & (WebhookDelivery.id > after[1])))
        rows = session.execute(statement.order_by(WebhookDelivery.created_at, WebhookDelivery.id)
                               .limit(batch_size)).scalars().all()
        if not rows:
            return found
        after = (rows[-1].created_at, rows[-1].id)
        found.extend(row for row in rows if customer_id in (row.payload or ""))
        # Only the matches are kept: the rest of the batch can leave the session.
        for row in rows:
            if row not in found:
                session.expunge(row)


def scrub_customer(session, envelope, now=None):
    """Apply customer.erased once (see the module docstring). Returns
    {"tasks", "notifications", "deliveries"} counts, or None for a redelivery."""
    data = load(CustomerErased, envelope.get("data"))
    if not first_delivery(session, envelope):
        return None
    customer_id, now = data["customer_id"], now or utcnow()
    name = data["name"] or ERASED_CUSTOMER
    tasks = session.execute(select(Task).where(Task.customer_id == customer_id)).scalars().all()
    for task in tasks:
        task.title = f"Task about {name}"[:200]
        if task.description is not None:
            task.description = ERASED_TEXT
        task.updated_at = now
    notifications = session.execute(select(Notification).where(_mentions(customer_id))).scalars().all()
    for notification in notifications:
        notification.title = f"About {name}"[:300]
        notification.body = None
        notification.data = {key: (ERASED_TEXT if key in NAMING_KEYS and value is not None else value)
                             for key, value in (notification.data or {}).items()}
    deliveries = deliveries_about(session, customer_id, statuses=FINISHED)
    if deliveries:
        session.execute(delete(WebhookDelivery).where(WebhookDelivery.id.in_([row.id for row in deliveries]))
                        .execution_options(synchronize_session=False))
        for row in deliveries:
            session.expunge(row)
    delete_published_mentioning(session, [customer_id])
    session.flush()
    counts = {"tasks": len(tasks), "notifications": len(notifications), "deliveries": len(deliveries)}
    log.info("customer %s erased: %s", customer_id, counts)
    return counts
