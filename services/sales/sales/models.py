"""The sales service's own tables."""
from datetime import date
from decimal import Decimal

from sqlalchemy import Boolean, Date, ForeignKey, Index, Integer, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from crm_common.types import Money, UtcDateTime, Uuid, new_id, utcnow


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


def Percent():
    """A percentage, 0-100 with two decimals (a 13% tax rate is 13.00)."""
    return Numeric(5, 2)


# --- products and price lists -----------------------------------------------------

class Product(Base):
    __tablename__ = "products"

    id: Mapped[str] = mapped_column(Uuid(), primary_key=True, default=new_id)
    sku: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    unit: Mapped[str] = mapped_column(String(20))  # piece, hour, licence, kg ...
    list_price: Mapped[Decimal] = mapped_column(Money())
    currency: Mapped[str] = mapped_column(String(3))
    tax_rate: Mapped[Decimal] = mapped_column(Percent())
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}


class PriceList(Base):
    """Special prices for some customers: a quote line for one of them takes the price from here."""

    __tablename__ = "price_lists"

    id: Mapped[str] = mapped_column(Uuid(), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    currency: Mapped[str] = mapped_column(String(3))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}


class PriceListItem(Base):
    """A product's price in a price list, valid from one date (inclusive) to another (inclusive, or open)."""

    __tablename__ = "price_list_items"

    id: Mapped[str] = mapped_column(Uuid(), primary_key=True, default=new_id)
    price_list_id: Mapped[str] = mapped_column(Uuid(), ForeignKey("price_lists.id", ondelete="CASCADE"))
    product_id: Mapped[str] = mapped_column(Uuid(), ForeignKey("products.id"))
    unit_price: Mapped[Decimal] = mapped_column(Money())
    valid_from: Mapped[date] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)

    __table_args__ = (Index("ix_price_list_items_lookup", "price_list_id", "product_id", "valid_from"),)


class PriceListCustomer(Base):
    """Which customers a price list applies to (a customer has at most one)."""

    __tablename__ = "price_list_customers"

    customer_id: Mapped[str] = mapped_column(Uuid(), primary_key=True)
    price_list_id: Mapped[str] = mapped_column(Uuid(), ForeignKey("price_lists.id", ondelete="CASCADE"))


# --- pipelines and opportunities --------------------------------------------------

class Pipeline(Base):
    __tablename__ = "pipelines"

    id: Mapped[str] = mapped_column(Uuid(), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)


class PipelineStage(Base):
    __tablename__ = "pipeline_stages"

    id: Mapped[str] = mapped_column(Uuid(), primary_key=True, default=new_id)
    pipeline_id: Mapped[str] = mapped_column(Uuid(), ForeignKey("pipelines.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(50))  # qualification, needs_analysis, ... won, lost
    name: Mapped[str] = mapped_column(String(100))
    position: Mapped[int] = mapped_column(Integer)
    probability: Mapped[int] = mapped_column(Integer)  # default win probability, percent
    outcome: Mapped[str] = mapped_column(String(10))  # open | won | lost

    __table_args__ = (UniqueConstraint("pipeline_id", "key", name="uq_pipeline_stages_key"),)


class Opportunity(Base):
    __tablename__ = "opportunities"

    id: Mapped[str] = mapped_column(Uuid(), primary_key=True, default=new_id)
    customer_id: Mapped[str] = mapped_column(Uuid())
    pipeline_id: Mapped[str] = mapped_column(Uuid(), ForeignKey("pipelines.id"))
    stage_id: Mapped[str] = mapped_column(Uuid(), ForeignKey("pipeline_stages.id"))
    title: Mapped[str] = mapped_column(String(200))
    amount: Mapped[Decimal] = mapped_column(Money())
    currency: Mapped[str] = mapped_column(String(3))
    owner_id: Mapped[str | None] = mapped_column(Uuid())
    owner_team_id: Mapped[str | None] = mapped_column(String(64))
    expected_close_date: Mapped[date | None] = mapped_column(Date)
    probability: Mapped[int] = mapped_column(Integer)
    # True once someone set the probability by hand: stage moves then keep it.
    probability_overridden: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[str | None] = mapped_column(String(100))
    next_step: Mapped[str | None] = mapped_column(String(500))
    lost_reason: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(10))  # open | won | lost
    stage_entered_at: Mapped[object] = mapped_column(UtcDateTime)
    closed_at: Mapped[object | None] = mapped_column(UtcDateTime)
    created_by: Mapped[str | None] = mapped_column(Uuid())
    created_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (
        Index("ix_opportunities_owner_created", "owner_id", "created_at"),
        Index("ix_opportunities_team_created", "owner_team_id", "created_at"),
        Index("ix_opportunities_pipeline_stage", "pipeline_id", "stage_id"),
        Index("ix_opportunities_customer", "customer_id"),
    )


class OpportunityStageChange(Base):
    """One move of an opportunity between stages: the pipeline's history and the funnel's raw data."""

    __tablename__ = "opportunity_stage_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    opportunity_id: Mapped[str] = mapped_column(Uuid(), ForeignKey("opportunities.id", ondelete="CASCADE"))
    from_stage_id: Mapped[str | None] = mapped_column(Uuid())  # None: the opportunity was created here
    to_stage_id: Mapped[str] = mapped_column(Uuid())
    note: Mapped[str | None] = mapped_column(Text)
    changed_by: Mapped[str | None] = mapped_column(Uuid())
    changed_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    seconds_in_previous_stage: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (Index("ix_opportunity_stage_changes_opportunity", "opportunity_id", "id"),)


# --- quotes, orders and payments ---------------------------------------------------

class Quote(Base):
    __tablename__ = "quotes"

    id: Mapped[str] = mapped_column(Uuid(), primary_key=True, default=new_id)
    customer_id: Mapped[str] = mapped_column(Uuid())
    opportunity_id: Mapped[str | None] = mapped_column(Uuid(), ForeignKey("opportunities.id"))
    owner_id: Mapped[str | None] = mapped_column(Uuid())
    owner_team_id: Mapped[str | None] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(10))  # draft | sent | accepted | rejected | expired
    valid_until: Mapped[date | None] = mapped_column(Date)
    subtotal: Mapped[Decimal] = mapped_column(Money())
    discount_total: Mapped[Decimal] = mapped_column(Money())
    tax_total: Mapped[Decimal] = mapped_column(Money())
    total: Mapped[Decimal] = mapped_column(Money())
    notes: Mapped[str | None] = mapped_column(Text)
    rejected_reason: Mapped[str | None] = mapped_column(String(500))
    sent_at: Mapped[object | None] = mapped_column(UtcDateTime)
    decided_at: Mapped[object | None] = mapped_column(UtcDateTime)
    created_by: Mapped[str | None] = mapped_column(Uuid())
    created_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)

    lines: Mapped[list["QuoteLine"]] = relationship(cascade="all, delete-orphan", order_by="QuoteLine.position",
                                                    lazy="selectin")

    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (
        Index("ix_quotes_owner_created", "owner_id", "created_at"),
        Index("ix_quotes_team_created", "owner_team_id", "created_at"),
        Index("ix_quotes_customer", "customer_id"),
    )


class LineColumns:
    """The columns every priced line has (quote lines and order lines)."""

    position: Mapped[int] = mapped_column(Integer)
    product_id: Mapped[str | None] = mapped_column(Uuid())
    sku: Mapped[str | None] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(String(500))
    quantity: Mapped[Decimal] = mapped_column(Numeric(18, 3))
    unit_price: Mapped[Decimal] = mapped_column(Money())
    discount_percent: Mapped[Decimal] = mapped_column(Percent())
    tax_rate: Mapped[Decimal] = mapped_column(Percent())
    subtotal: Mapped[Decimal] = mapped_column(Money())  # quantity x unit price, rounded
    discount: Mapped[Decimal] = mapped_column(Money())
    tax: Mapped[Decimal] = mapped_column(Money())
    total: Mapped[Decimal] = mapped_column(Money())  # subtotal - discount + tax


class QuoteLine(LineColumns, Base):
    __tablename__ = "quote_lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    quote_id: Mapped[str] = mapped_column(Uuid(), ForeignKey("quotes.id", ondelete="CASCADE"), index=True)


class Order(Base):
    """A sale, recorded exactly once."""

    __tablename__ = "orders"

    id: Mapped[str] = mapped_column(Uuid(), primary_key=True, default=new_id)
    customer_id: Mapped[str] = mapped_column(Uuid())
    # The quote it was accepted from: unique, so accepting twice cannot record the sale twice.
    quote_id: Mapped[str | None] = mapped_column(Uuid(), ForeignKey("quotes.id"), unique=True)
    opportunity_id: Mapped[str | None] = mapped_column(Uuid())
    owner_id: Mapped[str | None] = mapped_column(Uuid())
    owner_team_id: Mapped[str | None] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(12))  # draft | confirmed | paid | fulfilled | cancelled
    subtotal: Mapped[Decimal] = mapped_column(Money())
    discount_total: Mapped[Decimal] = mapped_column(Money())
    tax_total: Mapped[Decimal] = mapped_column(Money())
    total: Mapped[Decimal] = mapped_column(Money())
    paid_amount: Mapped[Decimal] = mapped_column(Money(), default=Decimal("0.00"))
    cancel_reason: Mapped[str | None] = mapped_column(String(500))
    notes: Mapped[str | None] = mapped_column(Text)
    confirmed_at: Mapped[object | None] = mapped_column(UtcDateTime)
    paid_at: Mapped[object | None] = mapped_column(UtcDateTime)  # when fully paid
    fulfilled_at: Mapped[object | None] = mapped_column(UtcDateTime)
    cancelled_at: Mapped[object | None] = mapped_column(UtcDateTime)
    created_by: Mapped[str | None] = mapped_column(Uuid())
    created_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)

    lines: Mapped[list["OrderLine"]] = relationship(cascade="all, delete-orphan", order_by="OrderLine.position",
                                                    lazy="selectin")

    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (
        Index("ix_orders_owner_created", "owner_id", "created_at"),
        Index("ix_orders_team_created", "owner_team_id", "created_at"),
        Index("ix_orders_customer_created", "customer_id", "created_at"),
    )


class OrderLine(LineColumns, Base):
    __tablename__ = "order_lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(Uuid(), ForeignKey("orders.id", ondelete="CASCADE"), index=True)


class Payment(Base):
    __tablename__ = "payments"

    id: Mapped[str] = mapped_column(Uuid(), primary_key=True, default=new_id)
    order_id: Mapped[str] = mapped_column(Uuid(), ForeignKey("orders.id"), index=True)
    amount: Mapped[Decimal] = mapped_column(Money())
    paid_at: Mapped[object] = mapped_column(UtcDateTime)
    method: Mapped[str] = mapped_column(String(20))  # bank_transfer | card | cash | cheque | other
    reference: Mapped[str | None] = mapped_column(String(100))
    created_by: Mapped[str | None] = mapped_column(Uuid())
    created_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)


# --- contracts ---------------------------------------------------------------------

class Contract(Base):
    __tablename__ = "contracts"

    id: Mapped[str] = mapped_column(Uuid(), primary_key=True, default=new_id)
    customer_id: Mapped[str] = mapped_column(Uuid())
    order_id: Mapped[str | None] = mapped_column(Uuid(), ForeignKey("orders.id"))
    title: Mapped[str] = mapped_column(String(200))
    value: Mapped[Decimal] = mapped_column(Money())
    currency: Mapped[str] = mapped_column(String(3))
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date] = mapped_column(Date)
    renewal_terms: Mapped[str | None] = mapped_column(Text)
    # draft | pending_approval | approved | signed | active | expired | terminated
    status: Mapped[str] = mapped_column(String(20))
    owner_id: Mapped[str | None] = mapped_column(Uuid())
    owner_team_id: Mapped[str | None] = mapped_column(String(64))
    created_by: Mapped[str | None] = mapped_column(Uuid())  # the author: may not approve it
    approved_by: Mapped[str | None] = mapped_column(Uuid())
    approved_at: Mapped[object | None] = mapped_column(UtcDateTime)
    rejected_reason: Mapped[str | None] = mapped_column(String(500))
    signed_at: Mapped[object | None] = mapped_column(UtcDateTime)
    terminated_at: Mapped[object | None] = mapped_column(UtcDateTime)
    termination_reason: Mapped[str | None] = mapped_column(String(500))
    expired_at: Mapped[object | None] = mapped_column(UtcDateTime)
    # The smallest "days before the end" notice already published (30, 7, 1): each goes out once.
    last_expiry_notice_days: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (
        Index("ix_contracts_owner_created", "owner_id", "created_at"),
        Index("ix_contracts_team_created", "owner_team_id", "created_at"),
        Index("ix_contracts_status_end", "status", "end_date"),
        Index("ix_contracts_customer", "customer_id"),
    )


class ContractStatusChange(Base):
    __tablename__ = "contract_status_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    contract_id: Mapped[str] = mapped_column(Uuid(), ForeignKey("contracts.id", ondelete="CASCADE"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    note: Mapped[str | None] = mapped_column(Text)
    changed_by: Mapped[str | None] = mapped_column(Uuid())
    changed_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)


class ContractAttachment(Base):
    """The metadata of a contract's file; the bytes live in the attachment store (sales.storage)."""

    __tablename__ = "contract_attachments"

    id: Mapped[str] = mapped_column(Uuid(), primary_key=True, default=new_id)
    contract_id: Mapped[str] = mapped_column(Uuid(), ForeignKey("contracts.id", ondelete="CASCADE"), index=True)
    file_name: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    checksum: Mapped[str] = mapped_column(String(64))  # sha256, hex
    storage_key: Mapped[str] = mapped_column(String(255))
    uploaded_by: Mapped[str | None] = mapped_column(Uuid())
    uploaded_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
