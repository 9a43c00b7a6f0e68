"""The notifications service's own tables."""
from sqlalchemy import JSON, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

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
