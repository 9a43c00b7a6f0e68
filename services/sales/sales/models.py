"""The sales service's own tables."""
from sqlalchemy import Boolean, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from crm_common.types import Uuid


class Base(DeclarativeBase):
    pass


class CustomerReplica(Base):
    """The little sales needs to know about a customer, kept from the customers service's events.

    ``version`` is the customer's version in the newest snapshot
    (created/updated/deleted) applied here.
    """

    __tablename__ = "customer_replica"

    id: Mapped[str] = mapped_column(Uuid(), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    owner_id: Mapped[str | None] = mapped_column(Uuid())
    owner_team_id: Mapped[str | None] = mapped_column(String(64))
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    version: Mapped[int] = mapped_column(Integer)
