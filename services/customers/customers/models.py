"""The customers service's own tables."""
from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from crm_common.types import UtcDateTime, Uuid, new_id, utcnow


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[str] = mapped_column(Uuid(), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(10))
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(32))
    owner_id: Mapped[str | None] = mapped_column(Uuid())
    # The owner's team at assignment time: managers see their team's customers.
    owner_team_id: Mapped[str | None] = mapped_column(String(64))
    lifecycle_stage: Mapped[str] = mapped_column(String(20))
    lifecycle_changed_at: Mapped[object] = mapped_column(UtcDateTime)
    tier: Mapped[str | None] = mapped_column(String(1))
    region: Mapped[str | None] = mapped_column(String(100))
    industry: Mapped[str | None] = mapped_column(String(100))
    source: Mapped[str | None] = mapped_column(String(100))
    notes: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(Uuid())
    created_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    deleted_at: Mapped[object | None] = mapped_column(UtcDateTime)
    version: Mapped[int] = mapped_column(Integer, default=1)

    tag_rows: Mapped[list["CustomerTag"]] = relationship(
        back_populates="customer", cascade="all, delete-orphan", lazy="selectin",
        order_by="CustomerTag.tag",
    )

    # UPDATEs say "WHERE version = <what was read>": two concurrent edits of
    # one version cannot both win.
    __mapper_args__ = {"version_id_col": version}

    __table_args__ = (
        Index("ix_customers_owner_created", "owner_id", "created_at"),
        Index("ix_customers_team_created", "owner_team_id", "created_at"),
        Index("ix_customers_created", "created_at"),
    )

    @property
    def tags(self):
        return sorted(row.tag for row in self.tag_rows)


class CustomerTag(Base):
    __tablename__ = "customer_tags"

    customer_id: Mapped[str] = mapped_column(
        Uuid(), ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(50), primary_key=True, index=True)

    customer: Mapped[Customer] = relationship(back_populates="tag_rows")
