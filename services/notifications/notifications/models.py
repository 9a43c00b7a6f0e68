"""The notifications service's own tables."""
from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from crm_common.crypto import EncryptedText
from crm_common.types import UtcDateTime, Uuid, new_id, utcnow


class Base(DeclarativeBase):
    pass


class Notification(Base):
    """One message in one user's in-app inbox."""

    __tablename__ = "notifications"

    id: Mapped[str] = mapped_column(Uuid(), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(Uuid())
    # What happened, as a stable code ("customer.assigned"); clients may localise from it and data.
    type: Mapped[str] = mapped_column(String(100))
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    read_at: Mapped[object | None] = mapped_column(UtcDateTime)
    created_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    # The event this notification was made from (None for ones not made from an event).
    source_event_id: Mapped[str | None] = mapped_column(String(36))

    __table_args__ = (
        # The inbox, newest first (the read part of the list).
        Index("ix_notifications_user_created", "user_id", "created_at", "id"),
        # Unread ones only: the top of the list and the unread badge.
        Index("ix_notifications_user_unread", "user_id", "created_at", "id",
              postgresql_where=text("read_at IS NULL"), sqlite_where=text("read_at IS NULL")),
        # A second line of defence behind crm_processed_events: one event,
        # at most one notification per user.
        UniqueConstraint("source_event_id", "user_id", name="uq_notifications_event_user"),
    )


# --- tasks and reminders ------------------------------------------------------------

class Task(Base):
    """Something a user must do by a date, made by hand or from an event (a follow-up, a contract)."""

    __tablename__ = "tasks"

    id: Mapped[str] = mapped_column(Uuid(), primary_key=True, default=new_id)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    assignee_id: Mapped[str] = mapped_column(Uuid())
    assignee_team_id: Mapped[str | None] = mapped_column(String(64))
    customer_id: Mapped[str | None] = mapped_column(Uuid())
    opportunity_id: Mapped[str | None] = mapped_column(Uuid())
    contract_id: Mapped[str | None] = mapped_column(Uuid())
    due_at: Mapped[object | None] = mapped_column(UtcDateTime)
    remind_at: Mapped[object | None] = mapped_column(UtcDateTime)
    priority: Mapped[str] = mapped_column(String(10), default="normal")  # low | normal | high
    status: Mapped[str] = mapped_column(String(10), default="open")  # open | done | cancelled
    # Where it came from: manual | followup | contract; source_ref names the thing
    # (the follow-up id; "<contract id>:<days>"), unique per source so an event makes one task.
    source: Mapped[str] = mapped_column(String(10), default="manual")
    source_ref: Mapped[str | None] = mapped_column(String(80))
    # The reminder: pending until remind_at, then claimed by one instance and sent.
    reminder_state: Mapped[str | None] = mapped_column(String(10))  # pending | claimed | sent | None
    reminder_claimed_by: Mapped[str | None] = mapped_column(String(64))
    reminder_claimed_at: Mapped[object | None] = mapped_column(UtcDateTime)
    reminded_at: Mapped[object | None] = mapped_column(UtcDateTime)
    created_by: Mapped[str | None] = mapped_column(Uuid())
    created_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    completed_at: Mapped[object | None] = mapped_column(UtcDateTime)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (
        Index("ix_tasks_assignee_due", "assignee_id", "status", "due_at"),
        Index("ix_tasks_team_due", "assignee_team_id", "status", "due_at"),
        Index("ix_tasks_reminders_due", "reminder_state", "remind_at"),
        UniqueConstraint("source", "source_ref", name="uq_tasks_source_ref"),
    )


class Recipient(Base):
    """What notifications needs to know about a user to reach them, kept from the gateway's user events."""

    __tablename__ = "recipients"

    user_id: Mapped[str] = mapped_column(Uuid(), primary_key=True)
    email: Mapped[str | None] = mapped_column(String(254))
    name: Mapped[str | None] = mapped_column(String(200))
    language: Mapped[str] = mapped_column(String(10), default="en")  # en | zh-CN
    team_id: Mapped[str | None] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    version: Mapped[int] = mapped_column(Integer)


class Preference(Base):
    """A user's choice of channels per notification type, and quiet hours."""

    __tablename__ = "notification_preferences"

    user_id: Mapped[str] = mapped_column(Uuid(), primary_key=True)
    # {"<notification type>": ["inbox", "email"]}; a type not listed gets the defaults.
    channels: Mapped[dict] = mapped_column(JSON, default=dict)
    # {"start": "22:00", "end": "07:00", "timezone": "Asia/Shanghai"} or {} for none:
    # email waits for the end of quiet hours; the inbox is never quiet.
    quiet_hours: Mapped[dict] = mapped_column(JSON, default=dict)
    updated_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)


class Delivery(Base):
    """One notification on one channel: every attempt counted, failures retried, nothing lost."""

    __tablename__ = "deliveries"

    id: Mapped[str] = mapped_column(Uuid(), primary_key=True, default=new_id)
    notification_id: Mapped[str] = mapped_column(Uuid(), ForeignKey("notifications.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(10))  # inbox | email
    status: Mapped[str] = mapped_column(String(10))  # pending | sent | failed (gave up) | skipped
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[object | None] = mapped_column(UtcDateTime)
    claimed_until: Mapped[object | None] = mapped_column(UtcDateTime)
    created_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    delivered_at: Mapped[object | None] = mapped_column(UtcDateTime)

    __table_args__ = (
        Index("ix_deliveries_due", "status", "next_attempt_at"),
        Index("ix_deliveries_notification", "notification_id"),
    )


# --- webhooks -----------------------------------------------------------------------

class Webhook(Base):
    """An integration's subscription: these event types, POSTed signed to this URL."""

    __tablename__ = "webhooks"

    id: Mapped[str] = mapped_column(Uuid(), primary_key=True, default=new_id)
    url: Mapped[str] = mapped_column(String(2000))
    event_types: Mapped[list] = mapped_column(JSON, default=list)  # ["customer.created", "order.*"]
    secret: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Set by an admin to allow a URL in loopback or private ranges (refused otherwise: SSRF).
    allow_private_network: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str | None] = mapped_column(String(200))
    created_by: Mapped[str | None] = mapped_column(Uuid())
    created_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}


class WebhookDelivery(Base):
    """One event to one webhook: retried with exponential backoff for up to 24 hours."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(Uuid(), primary_key=True, default=new_id)
    webhook_id: Mapped[str] = mapped_column(Uuid(), ForeignKey("webhooks.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(36))
    event_type: Mapped[str] = mapped_column(String(100))
    # The envelope as sent, byte for byte; it carries customer snapshots (phones,
    # emails), so it is encrypted at rest and signed over the decrypted text.
    payload: Mapped[str] = mapped_column(EncryptedText)
    status: Mapped[str] = mapped_column(String(10))  # pending | succeeded | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[object | None] = mapped_column(UtcDateTime)
    claimed_until: Mapped[object | None] = mapped_column(UtcDateTime)
    created_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    finished_at: Mapped[object | None] = mapped_column(UtcDateTime)

    __table_args__ = (
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_webhook", "webhook_id", "created_at"),
        UniqueConstraint("webhook_id", "event_id", name="uq_webhook_deliveries_event"),
    )


class WebhookAttempt(Base):
    """One POST of a delivery: what the receiver answered."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(Uuid(), ForeignKey("webhook_deliveries.id", ondelete="CASCADE"),
                                             index=True)
    attempted_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
