"""reporting.consistency: the read models' totals against the sources'."""
from datetime import datetime, timezone

import pytest
from sqlalchemy import text

from crm_common.errors import Forbidden

from reporting.consistency import consistency, require_admin
from reporting.ingest import apply_event

NOW = datetime(2026, 11, 29, 12, tzinfo=timezone.utc)


@pytest.fixture
def facts(session, customer, order, envelope):
    """Two customers (one deleted), two orders in Nov 2026 CNY (one cancelled), one in Oct USD."""
    apply_event(session, envelope("customer.created", customer()))
    apply_event(session, envelope("customer.deleted", customer(version=2, deleted=True)))
    apply_event(session, envelope("order.placed", order(total="300.00")))
    apply_event(session, envelope("order.cancelled", order(status="cancelled", version=3)))
    apply_event(session, envelope("order.paid", order(status="paid", currency="USD", total="99.50",
                                                      confirmed_at="2026-10-31T23:59:00+00:00")))
    session.commit()
    return session


SOURCE_SALES = {"orders": 2, "revenue_by_month": [
    {"month": "2026-10", "currency": "USD", "orders": 1, "revenue": "99.50"},
    {"month": "2026-11", "currency": "CNY", "orders": 1, "revenue": "300.00"}]}


def test_equal_totals_are_consistent(facts):
    result = consistency(facts, {"customers": 1}, SOURCE_SALES, now=NOW)
    assert result["consistent"] is True and result["differences"] == []
    assert result["checked_at"] == NOW.isoformat()
    assert {check["name"]: (check["reporting"], check["source"]) for check in result["checks"]} == {
        "customers": (1, 1), "orders": (2, 2),
        "orders 2026-10 USD": (1, 1), "revenue 2026-10 USD": ("99.50", "99.50"),
        "orders 2026-11 CNY": (1, 1), "revenue 2026-11 CNY": ("300.00", "300.00"),
        # Each rollup against the facts: rows that differ.
        "rollup sales_day_rollups": (0, 0), "rollup sales_day_region_rollups": (0, 0),
        "rollup funnel_cohort_rollups": (0, 0),
        "rollup funnel_stage_time_rollups": (0, 0), "rollup pipeline_stage_rollups": (0, 0)}


def test_differences_are_listed_with_their_size(facts):
    source_sales = {"orders": 3, "revenue_by_month": [
        {"month": "2026-10", "currency": "USD", "orders": 1, "revenue": "99.50"},
        {"month": "2026-11", "currency": "CNY", "orders": 1, "revenue": "310.00"},
        {"month": "2026-11", "currency": "EUR", "orders": 1, "revenue": "5.00"}]}
    result = consistency(facts, {"customers": 4}, source_sales, now=NOW)
    assert result["consistent"] is False
    assert [(d["name"], d["reporting"], d["source"], d["difference"]) for d in result["differences"]] == [
        ("customers", 1, 4, -3),
        ("orders", 2, 3, -1),
        ("revenue 2026-11 CNY", "300.00", "310.00", "-10.00"),
        ("orders 2026-11 EUR", 0, 1, -1),
        ("revenue 2026-11 EUR", "0.00", "5.00", "-5.00")]


@pytest.mark.parametrize("corruption, name", [
    ("UPDATE sales_day_rollups SET revenue = revenue + 0.01", "rollup sales_day_rollups"),
    ("DELETE FROM sales_day_rollups", "rollup sales_day_rollups"),
    ("INSERT INTO pipeline_stage_rollups VALUES ('p', 'qualify', 1, 'open', 1)", "rollup pipeline_stage_rollups"),
])
def test_a_rollup_that_differs_from_its_facts_is_named(facts, corruption, name):
    facts.execute(text(corruption))
    result = consistency(facts, {"customers": 1}, SOURCE_SALES, now=NOW)
    assert result["consistent"] is False
    assert [(d["name"], d["source"]) for d in result["differences"]] == [(name, 0)]
    assert result["differences"][0]["reporting"] >= 1


def test_an_empty_read_model_against_empty_sources_is_consistent(session):
    assert consistency(session, {"customers": 0}, {"orders": 0, "revenue_by_month": []})["consistent"] is True


def test_only_admins_may_check(as_alice, as_admin):
    require_admin(as_admin)
    with pytest.raises(Forbidden):
        require_admin(as_alice)
