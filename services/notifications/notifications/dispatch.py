"""Getting a notification to its user: the inbox at once, other channels by Delivery rows.

The Notification row is the inbox item, written in the caller's transaction.
Every other channel the user's preferences select gets a Delivery row, and
``deliver_due`` (run by a timer in every instance) sends what is due. Each
delivery is claimed (claimed_until, a lease) and committed before its channel
is called, so two instances never send one delivery together and a slow
SMTP server holds no row locks; a failure is counted and retried later with
backoff, on its own, so one channel failing never blocks another or loses
the notification (it is in the inbox already).

Plain Python over a SQLAlchemy session; nothing here knows about nameko.
"""
import logging
from datetime import timedelta
from typing import Protocol

from sqlalchemy import or_, select, update

from crm_common.config import env
from crm_common.metrics import count_after_commit
from crm_common.types import utcnow

from notifications.metrics import NOTIFICATIONS_SENT
from notifications.models import Delivery, Notification, Recipient
from notifications.preferences import channels_for, quiet_hours_of, quiet_until
from notifications.task_schemas import EMAIL, INBOX

log = logging.getLogger(__name__)

PENDING, SENT, FAILED, SKIPPED = "pending", "sent", "failed", "skipped"
# Waits after the 1st, 2nd, ... failure; the last one repeats until MAX_ATTEMPTS.
BACKOFF = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2))
MAX_ATTEMPTS = 6
# How long a claimed delivery is ours: longer than any send may take, short
# enough that a crashed instance's deliveries are soon taken over.
CLAIM_LEASE = timedelta(minutes=2)
BATCH = 100
MAX_ERROR_CHARS = 2000


class Channel(Protocol):
    """A way to reach a user besides the inbox (email is the first)."""

    name: str

    def send(self, session, notification, recipient) -> None:
        """Deliver ``notification`` to ``recipient`` (a Recipient row); raise on failure."""


# channel name -> Channel; the email channel registers itself here (notifications.email).
channels: dict[str, Channel] = {}


class RecipientUnreachable(Exception):
    """This delivery can never succeed (no address, user deactivated): skipped, not retried."""


def notify(session, user_id, notification_type, title, body=None, data=None, now=None, source_event_id=None):
    """Put a notification in ``user_id``'s inbox and queue it on their other chosen channels.

    Returns the Notification. Quiet hours are taken into account here (the first
    attempt waits for their end) and again when the delivery falls due.
    """
    now = now or utcnow()
    notification = Notification(user_id=user_id, type=notification_type, title=title, body=body, data=data or {},
                                created_at=now, source_event_id=source_event_id)
    session.add(notification)
    session.flush()
    count_after_commit(session, NOTIFICATIONS_SENT.labels(INBOX, "sent"))
    for channel in channels_for(session, user_id, notification_type):
        if channel == INBOX:
            continue
        session.add(Delivery(notification_id=notification.id, channel=channel, status=PENDING, attempts=0,
                             next_attempt_at=_quiet_end(session, user_id, channel, now) or now, created_at=now))
    session.flush()
    return notification


def _quiet_end(session, user_id, channel, now):
    # Only email keeps quiet at night; the inbox is never quiet.
    if channel != EMAIL:
        return None
    return quiet_until(quiet_hours_of(session, user_id), now)


def retry_delay(attempts):
    """The wait after the ``attempts``-th failure, or None when it was the last allowed one."""
    if attempts >= MAX_ATTEMPTS:
        return None
    backoff = _backoff()
    return backoff[min(attempts, len(backoff)) - 1]


def _backoff():
    # CRM_DELIVERY_RETRY_SECONDS ("60,300,1800,7200") replaces BACKOFF: the
    # end-to-end tests make a failed email come back in seconds, not minutes.
    text = env("CRM_DELIVERY_RETRY_SECONDS")
    if not text:
        return BACKOFF
    return tuple(timedelta(seconds=float(part)) for part in text.split(",") if part.strip()) or BACKOFF


def deliver_due(session, now=None, registry=None, limit=BATCH):
    """Send every delivery that is due and not claimed by another instance; commits per delivery.

    Returns {"sent", "failed", "retrying", "skipped", "deferred"} counts of this run.
    """
    now = now or utcnow()
    registry = channels if registry is None else registry
    counts = dict.fromkeys(("sent", "failed", "retrying", "skipped", "deferred"), 0)
    due = session.execute(
        select(Delivery.id).where(*_claimable(now))
        .order_by(Delivery.next_attempt_at, Delivery.id).limit(limit)).scalars().all()
    session.commit()  # no transaction left open across the sends below
    for delivery_id in due:
        if not _claim(session, delivery_id, now):
            continue  # another instance has it
        counts[_deliver(session, delivery_id, now, registry)] += 1
    return counts


def _claimable(now):
    return (Delivery.status == PENDING, Delivery.next_attempt_at <= now,
            or_(Delivery.claimed_until.is_(None), Delivery.claimed_until < now))


def _claim(session, delivery_id, now):
    # Conditional UPDATE: on PostgreSQL a second instance's UPDATE waits for
    # this one's commit and then no longer matches (rowcount 0).
    claimed = session.execute(
        update(Delivery).where(Delivery.id == delivery_id, *_claimable(now))
        .values(claimed_until=now + CLAIM_LEASE).execution_options(synchronize_session=False)).rowcount == 1
    session.commit()
    return claimed


def _load(session, delivery_id):
    return session.execute(select(Delivery).where(Delivery.id == delivery_id)
                           .execution_options(populate_existing=True)).scalar_one()


def _deliver(session, delivery_id, now, registry):
    """One claimed delivery: deferred for quiet hours, skipped, sent, or a failure counted. Commits."""
    delivery = _load(session, delivery_id)
    notification = session.get(Notification, delivery.notification_id)
    quiet_end = _quiet_end(session, notification.user_id, delivery.channel, now)
    if quiet_end is not None:
        delivery.next_attempt_at, delivery.claimed_until = quiet_end, None
        session.commit()
        return "deferred"
    try:
        recipient = _recipient(session, notification.user_id, delivery.channel)
        sender = registry.get(delivery.channel)
        if sender is None:
            raise RuntimeError(f"No sender is set up for the {delivery.channel} channel.")
        sender.send(session, notification, recipient)
    except RecipientUnreachable as reason:
        session.rollback()
        return _finish(session, delivery_id, SKIPPED, str(reason), now, counted=False)
    except Exception as error:  # noqa: BLE001 - any failure of a channel is retried, never fatal
        session.rollback()
        log.warning("%s delivery %s failed: %r", delivery.channel, delivery_id, error)
        return _finish(session, delivery_id, None, f"{type(error).__name__}: {error}", now)
    return _finish(session, delivery_id, SENT, None, now)


def _recipient(session, user_id, channel):
    recipient = session.get(Recipient, user_id)
    if channel == EMAIL:
        if recipient is None:
            # Not skipped: the user's user.created event may simply not have arrived yet;
            # the retry finds them.
            raise LookupError("The user is not known to notifications yet: no email address.")
        if not recipient.email:
            raise RecipientUnreachable("The user has no email address.")
    if recipient is not None and not recipient.active:
        raise RecipientUnreachable("The user is deactivated.")
    return recipient


def _finish(session, delivery_id, status, error, now, counted=True):
    delivery = _load(session, delivery_id)
    delivery.claimed_until = None
    delivery.last_error = error[:MAX_ERROR_CHARS] if error else None
    if counted:
        delivery.attempts += 1
    if status == SENT:
        delivery.status, delivery.delivered_at = SENT, now
        outcome = "sent"
    elif status == SKIPPED:
        delivery.status = outcome = SKIPPED
    else:
        delay = retry_delay(delivery.attempts)
        if delay is None:
            delivery.status = outcome = FAILED
        else:
            delivery.next_attempt_at, outcome = now + delay, "retrying"
    count_after_commit(session, NOTIFICATIONS_SENT.labels(delivery.channel, outcome))
    session.commit()
    return outcome
