"""The reports over facts written directly into the read models, with figures worked out by hand.

Today is fixed at 2026-11-29 12:00 UTC. ALICE (sales, east) and BOB (sales,
west) own records; the east MANAGER sees ALICE's; the admin sees all.
"""
import base64
import csv
import io
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from nameko.testing.services import worker_factory
from openpyxl import load_workbook
from sqlalchemy.orm import Session

from crm_common.db import make_engine
from crm_common.errors import NotFound, ValidationFailed
from crm_common.migrate import upgrade
from crm_common.testing import memory_session, postgres_database
from crm_common.testing_cast import ALICE, BOB, MANAGER

from reporting.models import (
    Base,
    ContractFact, CustomerFact, CustomerLastFollowup, FollowupFact, OpportunityFact, OrderFact,
    OrderLineFact, StageChangeFact)
from reporting.ingest import refresh_last_contact
from reporting.reports import Reports
from reporting.service import ReportingService

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)
TEAMS = {ALICE: "east", BOB: "west", MANAGER: "east"}
PIPELINE = "00000000-0000-4000-8000-0000000000a1"
OTHER_PIPELINE = "00000000-0000-4000-8000-0000000000b2"
P1 = "00000000-0000-4000-8000-000000000a01"
P2 = "00000000-0000-4000-8000-000000000a02"
OCT_NOV = {"from": "2026-10-01", "to": "2026-11-30"}


@pytest.fixture(scope="module")
def postgres_engine():
    """One throwaway PostgreSQL database for the module, migrated as production is."""
    with postgres_database("crm_test_reports") as url:
        upgrade("reporting.migrations", url)
        engine = make_engine(url)
        yield engine
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def session(request):
    """Every report runs on SQLite (the unit tests' database) and on PostgreSQL (production's):
    the SQL must mean the same on both. On PostgreSQL each test's rows are rolled back."""
    if request.param == "sqlite":
        session = memory_session(Base.metadata)
        yield session
        session.close()
        return
    connection = request.getfixturevalue("postgres_engine").connect()
    transaction = connection.begin()
    session = Session(bind=connection, join_transaction_mode="create_savepoint")
    yield session
    session.close()
    transaction.rollback()
    connection.close()


def new_id():
    return str(uuid.uuid4())


def at(day, hour=10):
    return datetime(day.year, day.month, day.day, hour, tzinfo=timezone.utc)


def run(session, context, name, filters=None):
    return Reports(session, context, now=NOW).run(name, filters)


def rejected(session, context, name, filters):
    """The field names of the 422 the report answers ``filters`` with."""
    with pytest.raises(ValidationFailed) as error:
        run(session, context, name, filters)
    return set(error.value.errors)


# --- writing facts -----------------------------------------------------------

def add_customer(session, owner=ALICE, stage="lead", created=date(2026, 11, 2), deleted=False, churned_on=None,
                 **attributes):
    values = {"name": "Acme", "region": "east", "industry": "retail", "tier": "A", "source": "web", **attributes}
    row = CustomerFact(customer_id=values.pop("id", None) or new_id(), owner_id=owner,
                       owner_team_id=TEAMS.get(owner), lifecycle_stage=stage, created_at=at(created),
                       created_on=created, churned_on=churned_on, deleted=deleted, version=1,
                       last_contact_at=at(created), **values)
    session.add(row)
    session.flush()
    return row.customer_id


def add_order(session, owner=ALICE, total="100.00", paid="0.00", day=date(2026, 11, 2), status="confirmed",
              currency="CNY", customer_id=None, lines=()):
    """``lines``: (product_id, quantity, total, sku, description)."""
    order_id = new_id()
    counted = status in ("confirmed", "paid", "fulfilled")
    customer_id = customer_id or new_id()
    session.add(OrderFact(order_id=order_id, customer_id=customer_id, owner_id=owner, owner_team_id=TEAMS.get(owner),
                          status=status, counted=counted, currency=currency, total=Decimal(total),
                          paid_amount=Decimal(paid), placed_at=at(day) if day else None, placed_on=day, version=1))
    for position, (product_id, qty, line_total, sku, description) in enumerate(lines, start=1):
        session.add(OrderLineFact(order_id=order_id, position=position, product_id=product_id, sku=sku,
                                  description=description, quantity=Decimal(qty), total=Decimal(line_total),
                                  currency=currency, customer_id=customer_id, owner_id=owner,
                                  owner_team_id=TEAMS.get(owner), counted=counted, placed_on=day))
    session.flush()
    return order_id


def add_opportunity(session, created, status="open", owner=ALICE, pipeline=PIPELINE, amount="100.00",
                    probability=50, close=None, currency="CNY", closed=None, stages=()):
    """``stages``: (stage, position, outcome, seconds since the previous change) from creation on.
    The copies reporting.ingest keeps (furthest_position; the creation and owner on each change) are
    written as it would."""
    opportunity_id = new_id()
    forward = [position for _, position, outcome, _ in stages if outcome in ("open", "won")]
    session.add(OpportunityFact(furthest_position=max(forward, default=None),
        opportunity_id=opportunity_id, customer_id=new_id(), owner_id=owner, owner_team_id=TEAMS.get(owner),
        pipeline_id=pipeline, stage=stages[-1][0] if stages else "qualify",
        stage_position=stages[-1][1] if stages else 1, status=status, amount=Decimal(amount), currency=currency,
        probability=probability, expected_close_date=close, created_at=created, closed_at=closed, version=1))
    moment, previous = created, None
    for stage, position, outcome, seconds in stages:
        moment += timedelta(seconds=seconds or 0)
        session.add(StageChangeFact(
            stage_change_id=new_id(), opportunity_id=opportunity_id, pipeline_id=pipeline, owner_id=owner,
            owner_team_id=TEAMS.get(owner), from_stage=previous, to_stage=stage, to_stage_position=position,
            to_outcome=outcome, changed_at=moment, seconds_in_previous_stage=seconds,
            opportunity_created_at=created))
        previous = stage
    session.flush()
    return opportunity_id


def add_followup(session, customer_id, occurred, logged_by=ALICE, kind="call", owner=ALICE):
    session.add(FollowupFact(followup_id=new_id(), customer_id=customer_id, owner_id=owner,
                             owner_team_id=TEAMS.get(owner), logged_by=logged_by, type=kind,
                             occurred_at=occurred, occurred_on=occurred.date()))
    last = session.get(CustomerLastFollowup, customer_id)
    if last is None:
        session.add(CustomerLastFollowup(customer_id=customer_id, last_followup_at=occurred))
    elif last.last_followup_at < occurred:
        last.last_followup_at = occurred
    session.flush()
    refresh_last_contact(session, {customer_id})  # as reporting.ingest does


def add_contract(session, status, value, end, owner=ALICE, currency="CNY", title="Support"):
    contract_id = new_id()
    session.add(ContractFact(contract_id=contract_id, customer_id=new_id(), owner_id=owner,
                             owner_team_id=TEAMS.get(owner), title=title, status=status, value=Decimal(value),
                             currency=currency, start_date=date(2026, 1, 1), end_date=end, version=1))
    session.flush()
    return contract_id


# --- common rules ------------------------------------------------------------

def test_an_unknown_report_is_not_found(session, as_admin):
    with pytest.raises(NotFound):
        run(session, as_admin, "sales-by-weather")


@pytest.mark.parametrize("name, filters, field", [
    ("sales-by-period", {"colour": "red"}, "colour"),
    ("sales-by-owner", {"owner_id": ALICE}, "owner_id"),
    ("sales-by-period", {"from": "2026-11-31"}, "from"),
    ("sales-by-period", {"to": "29/11/2026"}, "to"),
    ("sales-by-period", {"from": "2026-11-02", "to": "2026-11-01"}, "from"),
    # Only ``from`` given, after today (the default ``to``).
    ("sales-by-period", {"from": "2026-12-01"}, "from"),
    ("sales-by-period", {"granularity": "year"}, "granularity"),
    ("sales-by-period", {"granularity": "day", "from": "2023-01-01", "to": "2026-01-05"}, "granularity"),
    ("sales-by-period", {"owner_id": "alice"}, "owner_id"),
    ("sales-by-period", {"region": ["east", "west"]}, "region"),
    ("customers-summary", {"granularity": "quarter"}, "granularity"),
    ("sales-top-customers", {"limit": "0"}, "limit"),
    ("sales-top-customers", {"limit": "101"}, "limit"),
    ("sales-top-customers", {"limit": "ten"}, "limit"),
    ("sales-funnel", {}, "pipeline"),
    ("sales-funnel", {"pipeline": "default"}, "pipeline"),
    ("activities", {"days": "0"}, "days"),
    ("activities", {"days": "3651"}, "days"),
    ("contracts", {"days": "366"}, "days"),
    ("contracts", {"from": "2026-01-01"}, "from"),
])
def test_bad_filters_are_422_naming_the_field(session, as_admin, name, filters, field):
    assert field in rejected(session, as_admin, name, filters)


def test_a_daily_report_of_three_years_is_allowed(session, as_admin):
    report = run(session, as_admin, "sales-by-period", {"granularity": "day", "from": "2024-01-01",
                                                        "to": "2026-12-31"})
    assert report["rows"] == []


def test_blank_filters_are_no_filters(session, as_admin):
    add_order(session, day=date(2026, 11, 2))
    report = run(session, as_admin, "sales-by-period", {"team": "", "region": "  ", **OCT_NOV})
    assert report["totals"][0]["orders"] == 1


# --- 1. customers-summary ----------------------------------------------------

@pytest.fixture
def customers(session):
    add_customer(session, ALICE, "lead", date(2026, 11, 2), tier="A", region="east", source="web")
    add_customer(session, ALICE, "prospect", date(2026, 10, 15), tier="B", region=None, source="web")
    add_customer(session, BOB, "churned", date(2025, 6, 1), tier="A", region="west", source="fair",
                 churned_on=date(2026, 11, 10))
    # Deleted customers count nowhere.
    add_customer(session, ALICE, "lead", date(2026, 11, 5), deleted=True)
    add_customer(session, BOB, "churned", date(2026, 11, 5), deleted=True, churned_on=date(2026, 11, 6))


def test_customers_summary_for_the_admin(session, as_admin, customers):
    report = run(session, as_admin, "customers-summary")
    assert report == {
        "from": "2025-12-01", "to": "2026-11-29", "granularity": "month", "total": 3,
        "by_lifecycle_stage": [{"key": "lead", "count": 1}, {"key": "prospect", "count": 1},
                               {"key": "customer", "count": 0}, {"key": "churned", "count": 1}],
        "by_tier": [{"key": "A", "count": 2}, {"key": "B", "count": 1}],
        "by_industry": [{"key": "retail", "count": 3}],
        "by_region": [{"key": None, "count": 1}, {"key": "east", "count": 1}, {"key": "west", "count": 1}],
        "by_source": [{"key": "web", "count": 2}, {"key": "fair", "count": 1}],
        "new_customers": [{"period": "2026-10", "period_start": "2026-10-01", "count": 1},
                          {"period": "2026-11", "period_start": "2026-11-01", "count": 1}],
        "churned": [{"period": "2026-11", "period_start": "2026-11-01", "count": 1}],
    }


def test_customers_summary_is_limited_to_what_the_caller_sees(session, as_alice, as_bob, as_east_manager,
                                                              customers):
    assert run(session, as_alice, "customers-summary")["total"] == 2
    assert run(session, as_east_manager, "customers-summary")["total"] == 2
    bob = run(session, as_bob, "customers-summary")
    assert bob["total"] == 1 and bob["new_customers"] == []
    assert bob["churned"] == [{"period": "2026-11", "period_start": "2026-11-01", "count": 1}]
    # A filter narrows, never widens: Bob asking for Alice's customers gets none.
    assert run(session, as_bob, "customers-summary", {"owner_id": ALICE})["total"] == 0


def test_customers_summary_filters_and_weeks(session, as_admin, customers):
    assert run(session, as_admin, "customers-summary", {"region": "east"})["total"] == 1
    assert run(session, as_admin, "customers-summary", {"source": "web", "tier": "B"})["total"] == 1
    assert run(session, as_admin, "customers-summary", {"team": "west"})["total"] == 1
    weekly = run(session, as_admin, "customers-summary", {"granularity": "week", "from": "2026-10-15",
                                                          "to": "2026-11-02"})
    # Both edges are inclusive.
    assert weekly["new_customers"] == [{"period": "2026-W42", "period_start": "2026-10-12", "count": 1},
                                       {"period": "2026-W45", "period_start": "2026-11-02", "count": 1}]
    narrower = run(session, as_admin, "customers-summary", {"from": "2026-10-16", "to": "2026-11-01"})
    assert narrower["new_customers"] == [] and narrower["total"] == 3


# --- 2.-5. sales ---------------------------------------------------------------

@pytest.fixture
def sales(session):
    east = add_customer(session, ALICE, region="east", name="Acme East")
    nowhere = add_customer(session, ALICE, region=None, name="Nowhere Ltd")
    west = add_customer(session, BOB, region="west", name="West Co")
    add_order(session, ALICE, "100.00", "100.00", date(2026, 11, 2), "paid", customer_id=east,
              lines=[(P1, "2", "60.00", "P1-NEW", "Widget"), (P2, "1", "40.00", "P2", "Gadget")])
    add_order(session, ALICE, "50.50", "20.00", date(2026, 10, 31), customer_id=nowhere,
              lines=[(P1, "1.5", "50.50", "P1-OLD", "Widget (old)")])
    add_order(session, BOB, "200.00", "0.00", date(2026, 11, 15), currency="USD", customer_id=west,
              lines=[(P1, "4", "200.00", "P1-2026", "Widget 2026")])
    # Not sales: cancelled, draft, and one before the range.
    add_order(session, ALICE, "999.00", "0.00", date(2026, 11, 3), "cancelled", customer_id=east,
              lines=[(P1, "9", "999.00", "P1-X", "Widget")])
    add_order(session, ALICE, "888.00", "0.00", None, "draft", customer_id=east)
    add_order(session, BOB, "10.00", "10.00", date(2026, 9, 30), customer_id=west)
    return {"east": east, "nowhere": nowhere, "west": west}


def test_sales_by_period_per_month_and_currency(session, as_admin, sales):
    report = run(session, as_admin, "sales-by-period", OCT_NOV)
    assert report == {
        "from": "2026-10-01", "to": "2026-11-30", "granularity": "month",
        "rows": [
            {"period": "2026-10", "period_start": "2026-10-01", "currency": "CNY", "orders": 1,
             "revenue": "50.50", "paid": "20.00", "outstanding": "30.50", "average_order_value": "50.50"},
            {"period": "2026-11", "period_start": "2026-11-01", "currency": "CNY", "orders": 1,
             "revenue": "100.00", "paid": "100.00", "outstanding": "0.00", "average_order_value": "100.00"},
            {"period": "2026-11", "period_start": "2026-11-01", "currency": "USD", "orders": 1,
             "revenue": "200.00", "paid": "0.00", "outstanding": "200.00", "average_order_value": "200.00"},
        ],
        "totals": [
            {"currency": "CNY", "orders": 2, "revenue": "150.50", "paid": "120.00", "outstanding": "30.50",
             "average_order_value": "75.25"},
            {"currency": "USD", "orders": 1, "revenue": "200.00", "paid": "0.00", "outstanding": "200.00",
             "average_order_value": "200.00"},
        ],
    }


def test_sales_by_period_edges_quarters_and_visibility(session, as_admin, as_alice, as_bob, as_east_manager,
                                                       sales):
    def totals(context, filters):
        return {row["currency"]: (row["orders"], row["revenue"])
                for row in run(session, context, "sales-by-period", filters)["totals"]}

    assert totals(as_admin, {"from": "2026-10-31", "to": "2026-10-31"}) == {"CNY": (1, "50.50")}
    assert totals(as_admin, {"from": "2026-11-01", "to": "2026-11-14"}) == {"CNY": (1, "100.00")}
    assert totals(as_alice, OCT_NOV) == {"CNY": (2, "150.50")}
    assert totals(as_east_manager, OCT_NOV) == {"CNY": (2, "150.50")}
    assert totals(as_bob, OCT_NOV) == {"USD": (1, "200.00")}
    assert totals(as_admin, {**OCT_NOV, "owner_id": BOB}) == {"USD": (1, "200.00")}
    assert totals(as_admin, {**OCT_NOV, "team": "east"}) == {"CNY": (2, "150.50")}
    # A customer attribute: only the order whose customer is in the east region.
    assert totals(as_admin, {**OCT_NOV, "region": "east"}) == {"CNY": (1, "100.00")}
    assert totals(as_admin, {**OCT_NOV, "industry": "mining"}) == {}
    quarterly = run(session, as_admin, "sales-by-period", {"granularity": "quarter", "from": "2026-09-01",
                                                           "to": "2026-11-30"})
    assert [(row["period"], row["period_start"], row["currency"], row["orders"], row["revenue"])
            for row in quarterly["rows"]] == [("2026-Q3", "2026-07-01", "CNY", 1, "10.00"),
                                              ("2026-Q4", "2026-10-01", "CNY", 2, "150.50"),
                                              ("2026-Q4", "2026-10-01", "USD", 1, "200.00")]


@pytest.mark.parametrize("granularity, expected", [
    # 2026 has 53 ISO weeks: 2026-12-28 .. 2027-01-03 is 2026-W53, and 2027-W01 starts on the 4th.
    ("week", [("2026-W53", "2026-12-28", 3), ("2027-W01", "2027-01-04", 1)]),
    ("month", [("2026-12", "2026-12-01", 2), ("2027-01", "2027-01-01", 2)]),
    ("quarter", [("2026-Q4", "2026-10-01", 2), ("2027-Q1", "2027-01-01", 2)]),
    ("day", [("2026-12-28", "2026-12-28", 1), ("2026-12-31", "2026-12-31", 1), ("2027-01-03", "2027-01-03", 1),
             ("2027-01-04", "2027-01-04", 1)]),
])
def test_periods_across_the_year_end(session, as_admin, granularity, expected):
    for day in (date(2026, 12, 28), date(2026, 12, 31), date(2027, 1, 3), date(2027, 1, 4)):
        add_order(session, day=day)
    report = run(session, as_admin, "sales-by-period", {"granularity": granularity, "from": "2026-12-01",
                                                        "to": "2027-01-31"})
    assert [(row["period"], row["period_start"], row["orders"]) for row in report["rows"]] == expected


def test_sales_by_owner(session, as_admin, as_alice, sales):
    assert run(session, as_admin, "sales-by-owner", OCT_NOV)["rows"] == [
        {"owner_id": BOB, "currency": "USD", "orders": 1, "revenue": "200.00", "paid": "0.00",
         "outstanding": "200.00"},
        {"owner_id": ALICE, "currency": "CNY", "orders": 2, "revenue": "150.50", "paid": "120.00",
         "outstanding": "30.50"},
    ]
    assert [row["owner_id"] for row in run(session, as_admin, "sales-by-owner", {**OCT_NOV, "team": "west"})[
        "rows"]] == [BOB]
    assert [row["owner_id"] for row in run(session, as_alice, "sales-by-owner", OCT_NOV)["rows"]] == [ALICE]


def test_sales_by_product(session, as_admin, as_alice, sales):
    assert run(session, as_admin, "sales-by-product", OCT_NOV)["rows"] == [
        {"product_id": P1, "sku": "P1-2026", "description": "Widget 2026", "currency": "USD", "quantity": "4",
         "revenue": "200.00", "share": "100.00"},
        # A product is named by its most recent sold line (2026-11-15, in USD), in every currency.
        {"product_id": P1, "sku": "P1-2026", "description": "Widget 2026", "currency": "CNY", "quantity": "3.5",
         "revenue": "110.50", "share": "73.42"},
        {"product_id": P2, "sku": "P2", "description": "Gadget", "currency": "CNY", "quantity": "1",
         "revenue": "40.00", "share": "26.58"},
    ]
    only_p2 = run(session, as_admin, "sales-by-product", {**OCT_NOV, "product_id": P2})["rows"]
    assert [(row["product_id"], row["share"]) for row in only_p2] == [(P2, "100.00")]
    assert {row["currency"] for row in run(session, as_alice, "sales-by-product", OCT_NOV)["rows"]} == {"CNY"}
    east_only = run(session, as_admin, "sales-by-product", {**OCT_NOV, "region": "east"})["rows"]
    assert [(row["product_id"], row["quantity"], row["share"]) for row in east_only] == [
        (P1, "2", "60.00"), (P2, "1", "40.00")]


def test_sales_top_customers(session, as_admin, as_alice, sales):
    assert run(session, as_admin, "sales-top-customers", {**OCT_NOV, "limit": "2"})["rows"] == [
        {"customer_id": sales["west"], "name": "West Co", "currency": "USD", "orders": 1, "revenue": "200.00",
         "paid": "0.00"},
        {"customer_id": sales["east"], "name": "Acme East", "currency": "CNY", "orders": 1, "revenue": "100.00",
         "paid": "100.00"},
    ]
    assert [row["name"] for row in run(session, as_alice, "sales-top-customers", OCT_NOV)["rows"]] == [
        "Acme East", "Nowhere Ltd"]


def test_sales_reports_without_data(session, as_admin):
    assert run(session, as_admin, "sales-by-period", OCT_NOV) == {
        "from": "2026-10-01", "to": "2026-11-30", "granularity": "month", "rows": [], "totals": []}
    for name in ("sales-by-owner", "sales-by-product", "sales-top-customers"):
        assert run(session, as_admin, name, OCT_NOV)["rows"] == []


# --- 6. sales-funnel ---------------------------------------------------------

DAY_SECONDS = 86400
QUALIFY, PROPOSE, NEGOTIATE = ("qualify", 1, "open"), ("propose", 2, "open"), ("negotiate", 3, "open")
WON, LOST = ("won", 4, "won"), ("lost", 5, "lost")


@pytest.fixture
def funnel(session):
    def created(day):
        return at(day, 9)

    # Won after skipping "negotiate": it still counts as having entered it.
    add_opportunity(session, created(date(2026, 11, 1)), "won", closed=created(date(2026, 11, 4)), stages=[
        (*QUALIFY, None), (*PROPOSE, 2 * DAY_SECONDS), (*WON, DAY_SECONDS)])
    add_opportunity(session, created(date(2026, 11, 2)), "lost", closed=created(date(2026, 11, 3)), stages=[
        (*QUALIFY, None), (*LOST, DAY_SECONDS)])
    add_opportunity(session, created(date(2026, 11, 3)), stages=[(*QUALIFY, None)])
    add_opportunity(session, created(date(2026, 11, 4)), stages=[
        (*QUALIFY, None), (*PROPOSE, 4 * DAY_SECONDS), (*NEGOTIATE, 5 * DAY_SECONDS)])
    add_opportunity(session, created(date(2026, 11, 5)), owner=BOB, stages=[(*QUALIFY, None)])
    # Outside the cohort: created before the range, and another pipeline.
    add_opportunity(session, created(date(2026, 9, 1)), "won", closed=created(date(2026, 9, 2)), stages=[
        (*QUALIFY, None), (*WON, DAY_SECONDS * 30)])
    add_opportunity(session, created(date(2026, 11, 1)), pipeline=OTHER_PIPELINE, stages=[(*QUALIFY, None)])


def test_sales_funnel(session, as_admin, funnel):
    report = run(session, as_admin, "sales-funnel", {"pipeline": PIPELINE, **OCT_NOV})
    assert report == {
        "pipeline": PIPELINE, "from": "2026-10-01", "to": "2026-11-30",
        "opportunities": 5, "open": 3, "won": 1, "lost": 1, "win_rate": "50.00",
        "average_sales_cycle_days": "3.0",
        "stages": [
            # In qualify: 2, 1 and 4 days before moving on: 7 / 3.
            {"stage": "qualify", "position": 1, "outcome": "open", "entered": 5, "conversion_rate": "40.00",
             "average_days_in_stage": "2.3"},
            {"stage": "propose", "position": 2, "outcome": "open", "entered": 2, "conversion_rate": "100.00",
             "average_days_in_stage": "3.0"},
            {"stage": "negotiate", "position": 3, "outcome": "open", "entered": 2, "conversion_rate": "50.00",
             "average_days_in_stage": None},
            {"stage": "won", "position": 4, "outcome": "won", "entered": 1, "conversion_rate": None,
             "average_days_in_stage": None},
            {"stage": "lost", "position": 5, "outcome": "lost", "entered": 1, "conversion_rate": None,
             "average_days_in_stage": None},
        ],
    }


def test_sales_funnel_cohort_edges_and_visibility(session, as_admin, as_alice, as_bob, funnel):
    def funnel_of(context, filters):
        report = run(session, context, "sales-funnel", {"pipeline": PIPELINE, **filters})
        return report["opportunities"], [row["entered"] for row in report["stages"]]

    assert funnel_of(as_alice, OCT_NOV) == (4, [4, 2, 2, 1, 1])
    assert funnel_of(as_bob, OCT_NOV) == (1, [1, 0, 0, 0, 0])
    assert funnel_of(as_admin, {**OCT_NOV, "owner_id": BOB}) == (1, [1, 0, 0, 0, 0])
    # Created on 2026-11-04 and 2026-11-05: both days inclusive.
    assert funnel_of(as_admin, {"from": "2026-11-04", "to": "2026-11-05"}) == (2, [2, 1, 1, 0, 0])
    empty = run(session, as_admin, "sales-funnel", {"pipeline": PIPELINE, "from": "2026-10-01", "to": "2026-10-02"})
    assert empty["opportunities"] == 0 and empty["win_rate"] is None
    assert empty["stages"][0] == {"stage": "qualify", "position": 1, "outcome": "open", "entered": 0,
                                  "conversion_rate": None, "average_days_in_stage": None}


# --- 7. sales-forecast -------------------------------------------------------

def test_sales_forecast(session, as_admin, as_bob):
    created = at(date(2026, 10, 1))
    add_opportunity(session, created, amount="1000.00", probability=50, close=date(2026, 12, 15))
    # 10.05 x 50% is 5.025 twice: rounded once at the end (10.05), not per opportunity (10.06).
    add_opportunity(session, created, amount="10.05", probability=50, close=date(2026, 12, 20))
    add_opportunity(session, created, amount="10.05", probability=50, close=date(2026, 12, 31))
    add_opportunity(session, created, owner=BOB, amount="500.00", probability=10, close=date(2027, 1, 10),
                    currency="USD")
    add_opportunity(session, created, amount="100.00", probability=20, pipeline=OTHER_PIPELINE)
    # Not forecast: closed, or expected outside the range (which ends 2027-10-31).
    add_opportunity(session, created, "won", amount="7.00", close=date(2026, 12, 1))
    add_opportunity(session, created, amount="7.00", close=date(2027, 11, 1))
    add_opportunity(session, created, amount="7.00", close=date(2026, 10, 31))

    report = run(session, as_admin, "sales-forecast")
    assert report == {
        "from": "2026-11-01", "to": "2027-10-31",
        "rows": [
            {"month": "2026-12", "owner_id": ALICE, "currency": "CNY", "opportunities": 3, "amount": "1020.10",
             "weighted_amount": "510.05"},
            {"month": "2027-01", "owner_id": BOB, "currency": "USD", "opportunities": 1, "amount": "500.00",
             "weighted_amount": "50.00"},
            {"month": None, "owner_id": ALICE, "currency": "CNY", "opportunities": 1, "amount": "100.00",
             "weighted_amount": "20.00"},
        ],
        "by_month": [
            {"month": "2026-12", "currency": "CNY", "opportunities": 3, "amount": "1020.10",
             "weighted_amount": "510.05"},
            {"month": "2027-01", "currency": "USD", "opportunities": 1, "amount": "500.00",
             "weighted_amount": "50.00"},
            {"month": None, "currency": "CNY", "opportunities": 1, "amount": "100.00", "weighted_amount": "20.00"},
        ],
    }
    assert [row["month"] for row in run(session, as_admin, "sales-forecast", {"pipeline": PIPELINE})["rows"]] == [
        "2026-12", "2027-01"]
    assert [row["owner_id"] for row in run(session, as_bob, "sales-forecast")["rows"]] == [BOB]
    edge = run(session, as_admin, "sales-forecast", {"from": "2026-12-20", "to": "2026-12-31"})
    assert edge["by_month"][0] == {"month": "2026-12", "currency": "CNY", "opportunities": 2, "amount": "20.10",
                                   "weighted_amount": "10.05"}


# --- 8. activities -----------------------------------------------------------

@pytest.fixture
def activity(session):
    ids = {
        "recent": add_customer(session, ALICE, created=date(2026, 1, 1), name="Recent"),
        "stale": add_customer(session, ALICE, created=date(2026, 2, 1), name="Stale"),
        "new": add_customer(session, ALICE, created=date(2026, 11, 25), name="New"),
        "never": add_customer(session, ALICE, created=date(2026, 3, 1), name="Never"),
        "bobs": add_customer(session, BOB, created=date(2026, 1, 1), name="Bob's"),
        "bobs_active": add_customer(session, BOB, created=date(2026, 11, 1), name="Bob's active"),
        "gone": add_customer(session, ALICE, created=date(2026, 1, 1), deleted=True),
    }
    add_followup(session, ids["recent"], at(date(2026, 11, 20)))
    add_followup(session, ids["recent"], at(date(2026, 11, 18)))
    add_followup(session, ids["recent"], at(date(2026, 11, 18)), kind="email")
    add_followup(session, ids["stale"], at(date(2026, 9, 1)), logged_by=MANAGER, kind="visit")
    add_followup(session, ids["bobs_active"], at(date(2026, 11, 20)), logged_by=BOB, owner=BOB)
    return ids


def test_activities(session, as_admin, activity):
    report = run(session, as_admin, "activities", {"granularity": "week"})
    assert report == {
        "from": "2025-12-01", "to": "2026-11-29", "granularity": "week",
        "followups": [
            {"period": "2026-W36", "period_start": "2026-08-31", "user_id": MANAGER, "total": 1,
             "by_type": {"visit": 1}},
            {"period": "2026-W47", "period_start": "2026-11-16", "user_id": ALICE, "total": 3,
             "by_type": {"call": 2, "email": 1}},
            {"period": "2026-W47", "period_start": "2026-11-16", "user_id": BOB, "total": 1, "by_type": {"call": 1}},
        ],
        "inactive_customers": {"days": 30, "count": 3, "items": [
            {"customer_id": activity["bobs"], "name": "Bob's", "owner_id": BOB, "last_followup_at": None},
            {"customer_id": activity["never"], "name": "Never", "owner_id": ALICE, "last_followup_at": None},
            {"customer_id": activity["stale"], "name": "Stale", "owner_id": ALICE,
             "last_followup_at": "2026-09-01T10:00:00+00:00"},
        ]},
    }


def test_activities_filters_and_visibility(session, as_admin, as_alice, as_east_manager, activity):
    alice = run(session, as_alice, "activities")
    assert alice["granularity"] == "month"
    # A follow-up counts for the customer's owner's view, whoever logged it.
    assert [(row["period"], row["user_id"], row["total"], row["by_type"]) for row in alice["followups"]] == [
        ("2026-09", MANAGER, 1, {"visit": 1}), ("2026-11", ALICE, 3, {"call": 2, "email": 1})]
    assert [item["name"] for item in alice["inactive_customers"]["items"]] == ["Never", "Stale"]
    assert run(session, as_east_manager, "activities")["inactive_customers"]["count"] == 2
    longer = run(session, as_admin, "activities", {"days": "100"})["inactive_customers"]
    assert (longer["days"], longer["count"]) == (100, 2)
    days = run(session, as_admin, "activities", {"granularity": "day", "from": "2026-11-18", "to": "2026-11-18",
                                                 "owner_id": ALICE})
    assert days["followups"] == [{"period": "2026-11-18", "period_start": "2026-11-18", "user_id": ALICE,
                                  "total": 2, "by_type": {"call": 1, "email": 1}}]
    assert days["inactive_customers"]["count"] == 2


# --- 9. contracts ------------------------------------------------------------

@pytest.fixture
def contracts(session):
    return {
        "soon": add_contract(session, "active", "1000.00", date(2026, 12, 10)),
        "later": add_contract(session, "signed", "500.00", date(2027, 6, 30), currency="USD"),
        "today": add_contract(session, "active", "200.00", date(2026, 11, 29)),
        "expired": add_contract(session, "expired", "300.00", date(2026, 10, 1)),
        "bobs": add_contract(session, "active", "700.00", date(2026, 12, 29), owner=BOB),
        # Still "active" but ended yesterday: the expiry job has not run yet; not active here.
        "overdue": add_contract(session, "active", "200.00", date(2026, 11, 28)),
        "draft": add_contract(session, "draft", "50.00", date(2027, 1, 1)),
    }


def test_contracts(session, as_admin, contracts):
    report = run(session, as_admin, "contracts")
    item = {"title": "Support", "currency": "CNY", "status": "active"}
    assert report == {
        "as_of": "2026-11-29",
        "active": {"count": 4, "value": [{"currency": "CNY", "value": "1900.00"},
                                         {"currency": "USD", "value": "500.00"}]},
        "expiring": {"days": 30, "count": 3, "items": [
            {"contract_id": contracts["today"], "customer_id": report["expiring"]["items"][0]["customer_id"],
             "owner_id": ALICE, "end_date": "2026-11-29", "value": "200.00", **item},
            {"contract_id": contracts["soon"], "customer_id": report["expiring"]["items"][1]["customer_id"],
             "owner_id": ALICE, "end_date": "2026-12-10", "value": "1000.00", **item},
            {"contract_id": contracts["bobs"], "customer_id": report["expiring"]["items"][2]["customer_id"],
             "owner_id": BOB, "end_date": "2026-12-29", "value": "700.00", **item},
        ]},
        "by_status": [
            {"status": "active", "currency": "CNY", "count": 4, "value": "2100.00"},
            {"status": "draft", "currency": "CNY", "count": 1, "value": "50.00"},
            {"status": "expired", "currency": "CNY", "count": 1, "value": "300.00"},
            {"status": "signed", "currency": "USD", "count": 1, "value": "500.00"},
        ],
    }


def test_contracts_horizon_and_visibility(session, as_admin, as_alice, as_bob, contracts):
    def expiring(context, filters=None):
        return [item["contract_id"] for item in run(session, context, "contracts", filters)["expiring"]["items"]]

    # today + 10 is 2026-12-09: the contract ending 2026-12-10 is one day out; + 11 takes it in.
    assert expiring(as_admin, {"days": "10"}) == [contracts["today"]]
    assert expiring(as_admin, {"days": "11"}) == [contracts["today"], contracts["soon"]]
    alice = run(session, as_alice, "contracts")
    assert alice["active"]["count"] == 3 and alice["expiring"]["count"] == 2
    assert expiring(as_bob) == [contracts["bobs"]]
    assert expiring(as_admin, {"team": "west"}) == [contracts["bobs"]]
    assert run(session, as_admin, "contracts", {"owner_id": BOB})["by_status"] == [
        {"status": "active", "currency": "CNY", "count": 1, "value": "700.00"}]


def test_expiring_contracts_list_the_first_100_and_count_them_all(session, as_admin):
    for offset in range(101):
        add_contract(session, "active", "1.00", date(2026, 11, 29) + timedelta(days=offset % 30))
    expiring = run(session, as_admin, "contracts")["expiring"]
    assert expiring["count"] == 101 and len(expiring["items"]) == 100
    assert expiring["items"][0]["end_date"] == "2026-11-29"


# --- exports -----------------------------------------------------------------

def export(session, context, name, filters=None, file_format="csv"):
    return Reports(session, context, now=NOW).export(name, filters, file_format)


def test_csv_export_of_sales_by_period(session, as_admin, sales):
    exported = export(session, as_admin, "sales-by-period", OCT_NOV)
    assert exported["filename"] == "sales-by-period-2026-10-01-2026-11-30.csv"
    assert exported["content_type"] == "text/csv; charset=utf-8"
    content = base64.b64decode(exported["content"])
    # Excel needs the BOM to read UTF-8.
    assert content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))
    assert rows == [
        ["period", "period_start", "currency", "orders", "revenue", "paid", "outstanding", "average_order_value"],
        ["2026-10", "2026-10-01", "CNY", "1", "50.50", "20.00", "30.50", "50.50"],
        ["2026-11", "2026-11-01", "CNY", "1", "100.00", "100.00", "0.00", "100.00"],
        ["2026-11", "2026-11-01", "USD", "1", "200.00", "0.00", "200.00", "200.00"],
        ["total", "", "CNY", "2", "150.50", "120.00", "30.50", "75.25"],
        ["total", "", "USD", "1", "200.00", "0.00", "200.00", "200.00"],
    ]
    assert exported["rows"] == 5


def test_xlsx_export_of_contracts_has_sections_and_numbers(session, as_admin, contracts):
    exported = export(session, as_admin, "contracts", file_format="xlsx")
    assert exported["filename"] == "contracts-2026-11-29.xlsx"
    assert exported["content_type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    sheet = load_workbook(io.BytesIO(base64.b64decode(exported["content"]))).active
    rows = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert rows[0] == ["section", "status", "currency", "count", "value", "contract_id", "title", "customer_id",
                       "owner_id", "end_date"]
    assert [row[0] for row in rows[1:]] == ["active"] * 2 + ["expiring"] * 3 + ["by_status"] * 4
    # Money arrives as numbers a spreadsheet can sum.
    assert rows[1][2] == "CNY" and rows[1][4] == 1900
    assert rows[3][5] == contracts["today"] and rows[3][9] == "2026-11-29"
    assert exported["rows"] == 9


def test_exports_of_every_report_open(session, as_admin, customers, sales, funnel, activity, contracts):
    for name in Reports.NAMES:
        filters = {"pipeline": PIPELINE} if name == "sales-funnel" else None
        for file_format in ("csv", "xlsx"):
            exported = export(session, as_admin, name, filters, file_format)
            assert exported["filename"].startswith(name + "-") and exported["filename"].endswith(file_format)
            assert exported["rows"] > 0, name


def test_customers_summary_csv_is_one_long_table(session, as_admin, customers):
    content = base64.b64decode(export(session, as_admin, "customers-summary")["content"]).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(content)))
    assert rows[0] == ["section", "key", "period", "period_start", "count"]
    assert rows[1] == ["total", "", "", "", "3"]
    assert ["by_lifecycle_stage", "churned", "", "", "1"] in rows
    assert ["new_customers", "", "2026-10", "2026-10-01", "1"] in rows


def test_activities_csv_has_a_column_per_followup_type(session, as_admin, activity):
    exported = export(session, as_admin, "activities", {"owner_id": ALICE})
    rows = list(csv.reader(io.StringIO(base64.b64decode(exported["content"]).decode("utf-8-sig"))))
    header = rows[0]
    assert header[:7] == ["section", "period", "period_start", "user_id", "total", "call", "email"]
    followups = [dict(zip(header, row)) for row in rows[1:] if row[0] == "followups"]
    assert [(row["period"], row["user_id"], row["total"], row["call"], row["email"], row["visit"])
            for row in followups] == [("2026-09", MANAGER, "1", "", "", "1"), ("2026-11", ALICE, "3", "2", "1", "")]


def test_an_unknown_export_format_is_422_naming_format(session, as_admin):
    with pytest.raises(ValidationFailed) as error:
        export(session, as_admin, "contracts", file_format="pdf")
    assert set(error.value.errors) == {"format"}


# --- the service's entrypoints -----------------------------------------------

def test_report_entrypoints_run_as_the_caller(session, as_admin, as_bob, sales):
    admin = worker_factory(ReportingService, db=session, context=as_admin)
    assert {row["currency"] for row in admin.report("sales-by-owner", OCT_NOV)["rows"]} == {"CNY", "USD"}
    bob = worker_factory(ReportingService, db=session, context=as_bob)
    assert {row["currency"] for row in bob.report("sales-by-owner", OCT_NOV)["rows"]} == {"USD"}
    exported = bob.export_report("sales-by-owner", OCT_NOV, "csv")
    assert exported["rows"] == 1 and exported["filename"] == "sales-by-owner-2026-10-01-2026-11-30.csv"
    with pytest.raises(NotFound):
        bob.report("nope")
