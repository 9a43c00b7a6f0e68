"""The reporting service's own tables: read models kept up to date from events.

Every fact table is fed by the owning service's events and can be rebuilt
from that service's data over RPC (``reporting.rebuild``). Rules every table
keeps:

- A record that has a ``version`` (customers, orders, opportunities,
  contracts) only ever moves to a newer version: events arrive at least once
  and in any order, and an older one never overwrites a newer one.
- Immutable records (order lines, follow-ups, stage changes) are keyed by the
  source's own ids, so writing one twice is a no-op.
- ``refreshed_at`` is when the row was last written by an event or a rebuild:
  a rebuild removes the rows that it did not see and that no event touched
  since it started (records gone from the source).
- Dates used for grouping (``placed_on``, ``occurred_on``) are stored as UTC
  calendar dates: reports group by their period (day, ISO week, month,
  quarter) in SQL, without time-zone arithmetic on millions of rows.
"""
from datetime import date
from decimal import Decimal

from sqlalchemy import BigInteger, Boolean, Date, Index, Integer, Numeric, String, Text, event
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from crm_common.types import JsonDocument, Money, UtcDateTime, Uuid, utcnow

from reporting import rollups


class Base(DeclarativeBase):
    pass


class CustomerFact(Base):
    """One row per customer, as the newest customer event we have seen describes it.

    Fed by customer.created/updated/deleted/imported.
    """

    __tablename__ = "customer_facts"

    customer_id: Mapped[str] = mapped_column(Uuid(), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    owner_id: Mapped[str | None] = mapped_column(Uuid())
    owner_team_id: Mapped[str | None] = mapped_column(String(64))
    lifecycle_stage: Mapped[str] = mapped_column(String(20))
    region: Mapped[str | None] = mapped_column(String(100))
    industry: Mapped[str | None] = mapped_column(String(100))
    tier: Mapped[str | None] = mapped_column(String(10))
    source: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[object] = mapped_column(UtcDateTime)
    created_on: Mapped[date | None] = mapped_column(Date)
    # When the customer last became churned (lifecycle_dates["churned"]); None unless churned now.
    churned_on: Mapped[date | None] = mapped_column(Date)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    version: Mapped[int] = mapped_column(Integer)
    refreshed_at: Mapped[object | None] = mapped_column(UtcDateTime, default=utcnow)
    # The newest follow-up's time, or without one the creation (customer_last_followups
    # copied here by ingest): the customers nobody contacted lately are an index range.
    last_contact_at: Mapped[object | None] = mapped_column(UtcDateTime)

    __table_args__ = (
        # Summaries are scoped by owner (sales) or team (managers).
        Index("ix_customer_facts_owner", "owner_id"),
        Index("ix_customer_facts_last_contact", "last_contact_at"),
        Index("ix_customer_facts_team", "owner_team_id"),
        Index("ix_customer_facts_created_on", "created_on"),
        Index("ix_customer_facts_churned_on", "churned_on"),
    )


class OrderFact(Base):
    """One row per order (fed by order.placed/paid/fulfilled/cancelled).

    An order counts as a sale from ``placed_on`` (the day it was confirmed)
    unless it is cancelled; ``counted`` says which, so queries need no status list.
    """

    __tablename__ = "order_facts"

    order_id: Mapped[str] = mapped_column(Uuid(), primary_key=True)
    customer_id: Mapped[str] = mapped_column(Uuid())
    owner_id: Mapped[str | None] = mapped_column(Uuid())
    owner_team_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(12))
    counted: Mapped[bool] = mapped_column(Boolean)
    currency: Mapped[str] = mapped_column(String(3))
    total: Mapped[Decimal] = mapped_column(Money())
    paid_amount: Mapped[Decimal] = mapped_column(Money())
    placed_at: Mapped[object | None] = mapped_column(UtcDateTime)
    placed_on: Mapped[date | None] = mapped_column(Date)
    version: Mapped[int] = mapped_column(Integer)
    refreshed_at: Mapped[object | None] = mapped_column(UtcDateTime, default=utcnow)
    # The customer's region, a copy the database keeps equal to customer_facts.region
    # (reporting.rollups: region copy triggers), so sales by region need no join and have a rollup.
    customer_region: Mapped[str | None] = mapped_column(String(100))

    __table_args__ = (
        Index("ix_order_facts_placed_on", "placed_on"),
        Index("ix_order_facts_owner_placed_on", "owner_id", "placed_on"),
        Index("ix_order_facts_team_placed_on", "owner_team_id", "placed_on"),
        # One owner's sales in a region (the rollups have no owner x region).
        Index("ix_order_facts_owner_region", "owner_id", "customer_region", "placed_on"),
        # Per-customer totals (top customers) read this index alone, already in customer order, on
        # PostgreSQL (INCLUDE); merges find a customer's orders by its first column.
        Index("ix_order_facts_customer", "customer_id", "currency",
              postgresql_include=["placed_on", "counted", "total", "paid_amount"]),
    )


class OrderLineFact(Base):
    """One row per order line; the order's owner, day and ``counted`` are copied onto it.

    Lines never change once an order is placed, so they are written once
    (from whichever event carries them first); when the order's status or
    owner changes, the copies on its lines are updated with it. The copies
    spare the by-product report a join over a million lines.
    """

    __tablename__ = "order_line_facts"

    order_id: Mapped[str] = mapped_column(Uuid(), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[str | None] = mapped_column(Uuid())
    sku: Mapped[str | None] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(String(500))
    quantity: Mapped[Decimal] = mapped_column(Numeric(18, 3))
    total: Mapped[Decimal] = mapped_column(Money())
    currency: Mapped[str] = mapped_column(String(3))
    customer_id: Mapped[str] = mapped_column(Uuid())
    owner_id: Mapped[str | None] = mapped_column(Uuid())
    owner_team_id: Mapped[str | None] = mapped_column(String(64))
    counted: Mapped[bool] = mapped_column(Boolean)
    placed_on: Mapped[date | None] = mapped_column(Date)
    refreshed_at: Mapped[object | None] = mapped_column(UtcDateTime, default=utcnow)

    __table_args__ = (
        Index("ix_order_line_facts_placed_on", "placed_on"),
        Index("ix_order_line_facts_product_placed_on", "product_id", "placed_on"),
        Index("ix_order_line_facts_owner_placed_on", "owner_id", "placed_on"),
    )


class OpportunityFact(Base):
    """One row per opportunity, as its newest event describes it (opportunity.*)."""

    __tablename__ = "opportunity_facts"

    opportunity_id: Mapped[str] = mapped_column(Uuid(), primary_key=True)
    customer_id: Mapped[str] = mapped_column(Uuid())
    owner_id: Mapped[str | None] = mapped_column(Uuid())
    owner_team_id: Mapped[str | None] = mapped_column(String(64))
    pipeline_id: Mapped[str] = mapped_column(Uuid())
    stage: Mapped[str] = mapped_column(String(64))
    stage_position: Mapped[int | None] = mapped_column(Integer)
    # The furthest open or won stage it ever entered (from its stage changes): it has been
    # through every open stage up to there, even those it skipped. The funnel counts on it.
    furthest_position: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(10))  # open | won | lost
    amount: Mapped[Decimal] = mapped_column(Money())
    currency: Mapped[str] = mapped_column(String(3))
    probability: Mapped[int] = mapped_column(Integer)
    expected_close_date: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[object] = mapped_column(UtcDateTime)
    closed_at: Mapped[object | None] = mapped_column(UtcDateTime)
    version: Mapped[int] = mapped_column(Integer)
    refreshed_at: Mapped[object | None] = mapped_column(UtcDateTime, default=utcnow)

    __table_args__ = (
        Index("ix_opportunity_facts_pipeline_created", "pipeline_id", "created_at"),
        Index("ix_opportunity_facts_owner", "owner_id"),
        Index("ix_opportunity_facts_team", "owner_team_id"),
        Index("ix_opportunity_facts_status_close", "status", "expected_close_date"),
    )


class StageChangeFact(Base):
    """One row per entry of an opportunity into a stage (its creation included: from_stage None).

    Keyed by the sales service's stage-change id; ``seconds_in_previous_stage``
    is how long the opportunity spent in ``from_stage`` before this change.
    The opportunity's creation time and current owner are copied onto its
    changes (as the order's onto its lines), so the funnel selects a cohort's
    changes without a join.
    """

    __tablename__ = "stage_change_facts"

    stage_change_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    opportunity_id: Mapped[str] = mapped_column(Uuid())
    pipeline_id: Mapped[str] = mapped_column(Uuid())
    owner_id: Mapped[str | None] = mapped_column(Uuid())
    owner_team_id: Mapped[str | None] = mapped_column(String(64))
    from_stage: Mapped[str | None] = mapped_column(String(64))
    to_stage: Mapped[str] = mapped_column(String(64))
    to_stage_position: Mapped[int | None] = mapped_column(Integer)
    to_outcome: Mapped[str] = mapped_column(String(10))  # open | won | lost
    changed_at: Mapped[object] = mapped_column(UtcDateTime)
    seconds_in_previous_stage: Mapped[int | None] = mapped_column(Integer)
    opportunity_created_at: Mapped[object | None] = mapped_column(UtcDateTime)
    refreshed_at: Mapped[object | None] = mapped_column(UtcDateTime, default=utcnow)

    __table_args__ = (
        Index("ix_stage_change_facts_pipeline_cohort", "pipeline_id", "opportunity_created_at"),
        Index("ix_stage_change_facts_opportunity", "opportunity_id"),
    )


class FollowupFact(Base):
    """One row per follow-up logged (followup.logged); follow-ups are append-only."""

    __tablename__ = "followup_facts"

    followup_id: Mapped[str] = mapped_column(Uuid(), primary_key=True)
    customer_id: Mapped[str] = mapped_column(Uuid())
    owner_id: Mapped[str | None] = mapped_column(Uuid())
    owner_team_id: Mapped[str | None] = mapped_column(String(64))
    logged_by: Mapped[str | None] = mapped_column(Uuid())
    type: Mapped[str] = mapped_column(String(20))
    occurred_at: Mapped[object] = mapped_column(UtcDateTime)
    occurred_on: Mapped[date] = mapped_column(Date)
    refreshed_at: Mapped[object | None] = mapped_column(UtcDateTime, default=utcnow)

    __table_args__ = (
        Index("ix_followup_facts_occurred_on", "occurred_on"),
        Index("ix_followup_facts_customer_occurred", "customer_id", "occurred_at"),
        Index("ix_followup_facts_logged_by_occurred_on", "logged_by", "occurred_on"),
    )


class CustomerLastFollowup(Base):
    """The newest follow-up of each customer: kept apart from ``customer_facts`` so a
    follow-up that arrives before its customer's first event is not lost."""

    __tablename__ = "customer_last_followups"

    customer_id: Mapped[str] = mapped_column(Uuid(), primary_key=True)
    last_followup_at: Mapped[object] = mapped_column(UtcDateTime)


class CustomerMerge(Base):
    """A customer merged into another (customer.merged): the facts of ``source_id`` now belong to
    ``target_id``. Kept so that an event about the source that arrives after the merge (an order
    placed just before it) is counted for the target too."""

    __tablename__ = "customer_merges"

    source_id: Mapped[str] = mapped_column(Uuid(), primary_key=True)
    target_id: Mapped[str] = mapped_column(Uuid())
    merged_at: Mapped[object] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_customer_merges_target", "target_id"),)


class ContractFact(Base):
    """One row per contract, as its newest event describes it (contract.*)."""

    __tablename__ = "contract_facts"

    contract_id: Mapped[str] = mapped_column(Uuid(), primary_key=True)
    customer_id: Mapped[str] = mapped_column(Uuid())
    owner_id: Mapped[str | None] = mapped_column(Uuid())
    owner_team_id: Mapped[str | None] = mapped_column(String(64))
    title: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20))
    value: Mapped[Decimal] = mapped_column(Money())
    currency: Mapped[str] = mapped_column(String(3))
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date] = mapped_column(Date)
    version: Mapped[int] = mapped_column(Integer)
    refreshed_at: Mapped[object | None] = mapped_column(UtcDateTime, default=utcnow)

    __table_args__ = (
        Index("ix_contract_facts_status_end", "status", "end_date"),
        Index("ix_contract_facts_owner", "owner_id"),
        Index("ix_contract_facts_team", "owner_team_id"),
    )


class RebuildRun(Base):
    """One run of ``POST /reports/rebuild``: what it read, and how it ended."""

    __tablename__ = "rebuild_runs"

    id: Mapped[str] = mapped_column(Uuid(), primary_key=True)
    status: Mapped[str] = mapped_column(String(12))  # running | done | failed
    requested_by: Mapped[str | None] = mapped_column(Uuid())
    started_at: Mapped[object] = mapped_column(UtcDateTime)
    finished_at: Mapped[object | None] = mapped_column(UtcDateTime)
    heartbeat_at: Mapped[object | None] = mapped_column(UtcDateTime)
    # {"customers": n, "orders": n, ...}: rows read per source so far; and rows removed at the end.
    counts: Mapped[dict] = mapped_column(JsonDocument(), default=dict)
    error: Mapped[str | None] = mapped_column(Text)


# --- rollups: what the hot reports read instead of the facts ------------------------------------
#
# Each rollup row sums the facts that share its key. Database triggers on the fact tables keep
# them (reporting.rollups): a fact row's contribution is subtracted under its old values and added
# under its new ones, in the transaction that writes the fact, whichever code writes it. Key
# columns are never NULL (a missing owner or team is '', a missing position -1), because NULLs
# are distinct in a primary key and ON CONFLICT would then never find the row to add to. A row
# whose facts all moved away stays with zero counts: the reports skip it.

class SalesDayRollup(Base):
    """Counted orders (order_facts) per day x owner x team x currency, for sales-by-period."""

    __tablename__ = "sales_day_rollups"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner_team_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    orders: Mapped[int] = mapped_column(Integer)
    revenue: Mapped[Decimal] = mapped_column(Money())
    paid: Mapped[Decimal] = mapped_column(Money())

    __table_args__ = (
        # A sales rep's own rows, a manager's team's (the primary key serves the unscoped range).
        Index("ix_sales_day_rollups_owner_day", "owner_id", "day"),
        Index("ix_sales_day_rollups_team_day", "owner_team_id", "day"),
    )


class SalesDayRegionRollup(Base):
    """Counted orders (order_facts) per day x team x customer region x currency: sales by period for
    a manager's team or everyone, with or without a region, read from a few thousand rows."""

    __tablename__ = "sales_day_region_rollups"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    owner_team_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    region: Mapped[str] = mapped_column(String(100), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    orders: Mapped[int] = mapped_column(Integer)
    revenue: Mapped[Decimal] = mapped_column(Money())
    paid: Mapped[Decimal] = mapped_column(Money())

    __table_args__ = (
        Index("ix_sales_day_region_rollups_team_day", "owner_team_id", "day"),
    )


class FunnelCohortRollup(Base):
    """Opportunities (opportunity_facts) per pipeline x creation day x owner x team and what the
    funnel groups them by: status, furthest position reached, and the stage a lost one is in."""

    __tablename__ = "funnel_cohort_rollups"

    pipeline_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_on: Mapped[date] = mapped_column(Date, primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner_team_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(10), primary_key=True)
    furthest_position: Mapped[int] = mapped_column(Integer, primary_key=True)
    lost_stage: Mapped[str] = mapped_column(String(64), primary_key=True)
    opportunities: Mapped[int] = mapped_column(Integer)
    closed: Mapped[int] = mapped_column(Integer)
    # Sum of closed_at - created_at over the closed ones (the sales cycle).
    cycle_seconds: Mapped[Decimal] = mapped_column(Numeric(20, 6))

    __table_args__ = (
        # A rep's cohort, a manager's team's: without these, a range of the pipeline over every owner.
        Index("ix_funnel_cohort_rollups_owner", "pipeline_id", "owner_id", "created_on"),
        Index("ix_funnel_cohort_rollups_team", "pipeline_id", "owner_team_id", "created_on"),
    )


class FunnelStageTimeRollup(Base):
    """Time spent in a stage (stage_change_facts out of it) per pipeline x the opportunity's
    creation day x owner x team x stage left."""

    __tablename__ = "funnel_stage_time_rollups"

    pipeline_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_on: Mapped[date] = mapped_column(Date, primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner_team_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    from_stage: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Changes with a known time in the previous stage, and those times summed.
    changes: Mapped[int] = mapped_column(Integer)
    seconds: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        Index("ix_funnel_stage_time_rollups_owner", "pipeline_id", "owner_id", "created_on"),
        Index("ix_funnel_stage_time_rollups_team", "pipeline_id", "owner_team_id", "created_on"),
    )


class PipelineStageRollup(Base):
    """The stages each pipeline's stage changes entered, with how many changes entered each."""

    __tablename__ = "pipeline_stage_rollups"

    pipeline_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    to_stage: Mapped[str] = mapped_column(String(64), primary_key=True)
    to_stage_position: Mapped[int] = mapped_column(Integer, primary_key=True)
    to_outcome: Mapped[str] = mapped_column(String(10), primary_key=True)
    changes: Mapped[int] = mapped_column(Integer)


# A schema made from the models (tests, a fresh SQLite file) keeps its rollups as a migrated one does.
event.listen(Base.metadata, "after_create", lambda target, connection, **kw: rollups.create_triggers(connection))
