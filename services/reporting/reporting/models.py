"""The reporting service's own tables: read models kept up to date from events."""
from sqlalchemy import Boolean, Index, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from crm_common.types import UtcDateTime, Uuid


class Base(DeclarativeBase):
    pass


class CustomerFact(Base):
    """One row per customer, as the newest customer event we have seen describes it.

    Fed by customer.created/updated/deleted; ``version`` is the customer's own
    version, so an older event never overwrites a newer one.
    """

    __tablename__ = "customer_facts"

    customer_id: Mapped[str] = mapped_column(Uuid(), primary_key=True)
    owner_id: Mapped[str | None] = mapped_column(Uuid())
    owner_team_id: Mapped[str | None] = mapped_column(String(64))
    lifecycle_stage: Mapped[str] = mapped_column(String(20))
    region: Mapped[str | None] = mapped_column(String(100))
    industry: Mapped[str | None] = mapped_column(String(100))
    tier: Mapped[str | None] = mapped_column(String(10))
    source: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[object] = mapped_column(UtcDateTime)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    version: Mapped[int] = mapped_column(Integer)

    __table_args__ = (
        # Summaries are scoped by owner (sales) or team (managers).
        Index("ix_customer_facts_owner", "owner_id"),
        Index("ix_customer_facts_team", "owner_team_id"),
    )
