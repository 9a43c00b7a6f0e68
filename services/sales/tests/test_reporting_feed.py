"""What reporting learns from sales (issue 6): whole records in every event, with the version after the
change, and the same records a page at a time for rebuilds, plus the totals its figures must match."""
from datetime import date, datetime, timedelta, timezone

import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import update

from crm_common.errors import Forbidden

from sales.contracts import Contracts
from sales.models import Order
from sales.orders import Orders
from sales.pipeline import Opportunities
from sales.service import SalesService
from priced_records import events, known_customer, product

ORDER_FIELDS = {"id", "customer_id", "opportunity_id", "owner_id", "owner_team_id", "status", "currency",
                "subtotal", "discount_total", "tax_total", "total", "paid_amount", "confirmed_at", "created_at",
                "version", "lines"}


@pytest.fixture
def customer_id(session):
    return known_customer(session)


def new_order(session, context, customer_id, list_price="100.00", tax_rate="13", currency="CNY", confirm=True):
    widget = product(session, list_price=list_price, tax_rate=tax_rate, currency=currency)
    orders = Orders(session, context)
    created = orders.create({"customer_id": customer_id, "lines": [{"product_id": widget["id"], "quantity": 1}]})
    return orders.confirm(created["id"]) if confirm else created


def walk(service, kind, limit):
    """Every item of a reporting feed, page by page; and how many pages it took."""
    items, cursor, pages = [], None, 0
    while True:
        page = service.reporting_page(kind, cursor, limit)
        items += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            return items, pages


# --- events carry whole records -------------------------------------------------------

def test_every_order_event_carries_the_whole_order_at_its_new_version(session, as_alice, customer_id):
    order = new_order(session, as_alice, customer_id)
    orders = Orders(session, as_alice)
    orders.pay(order["id"], {"amount": "13.00", "method": "card"})
    orders.pay(order["id"], {"amount": "100.00", "method": "card"})
    orders.fulfil(order["id"])
    cancelled = new_order(session, as_alice, customer_id)
    orders.cancel(cancelled["id"], {"reason": "Changed their mind"})

    placed = [e["data"] for e in events(session, "order.placed")]
    paid = [e["data"] for e in events(session, "order.paid")]
    fulfilled, = [e["data"] for e in events(session, "order.fulfilled")]
    cancel, = [e["data"] for e in events(session, "order.cancelled")]
    for data in placed + paid + [fulfilled, cancel]:
        assert ORDER_FIELDS <= set(data)
        assert data["lines"][0]["total"] == "113.00" and data["lines"][0]["quantity"] == "1"
    # draft (1) -> confirmed (2) -> two payments (3, 4) -> fulfilled (5)
    assert [(d["status"], d["version"], d["paid_amount"]) for d in [placed[0], *paid, fulfilled]] == [
        ("confirmed", 2, "0.00"), ("confirmed", 3, "13.00"), ("paid", 4, "113.00"), ("fulfilled", 5, "113.00")]
    assert placed[0]["confirmed_at"] == fulfilled["confirmed_at"] is not None
    # order.paid keeps what is particular to the payment.
    assert (paid[0]["amount"], paid[0]["outstanding"], paid[0]["fully_paid"]) == ("13.00", "100.00", False)
    assert paid[1]["payment_id"] and paid[1]["fully_paid"] is True
    assert (cancel["status"], cancel["version"], cancel["paid_amount"], cancel["was_placed"]) == \
        ("cancelled", 3, "0.00", True)


def test_opportunity_events_carry_the_stage_position_outcome_and_the_move(session, as_alice, customer_id):
    opportunities = Opportunities(session, as_alice)
    created = opportunities.create({"customer_id": customer_id, "title": "500 licences", "amount": "1200.00",
                                    "currency": "CNY"}, owner_team_id="east")
    opportunities.move(created["id"], {"stage": "proposal"})
    opportunities.move(created["id"], {"stage": "won"})

    new, = [e["data"] for e in events(session, "opportunity.created")]
    assert (new["stage"], new["stage_position"], new["stage_outcome"], new["version"]) == \
        ("qualification", 0, "open", 1)
    first = new["stage_change"]
    assert (first["from_stage"], first["to_stage"], first["to_stage_position"], first["to_outcome"],
            first["seconds_in_previous_stage"], first["opportunity_id"], first["owner_id"]) == \
        (None, "qualification", 0, "open", None, created["id"], created["owner_id"])
    moves = [e["data"] for e in events(session, "opportunity.stage_changed")]
    assert [(m["from_stage"], m["to_stage"], m["version"], m["stage_position"], m["stage_outcome"])
            for m in moves] == [("qualification", "proposal", 2, 2, "open"), ("proposal", "won", 3, 4, "won")]
    to_won = moves[1]["stage_change"]
    assert (to_won["from_stage"], to_won["to_stage"], to_won["to_outcome"], to_won["to_stage_position"]) == \
        ("proposal", "won", "won", 4)
    assert to_won["seconds_in_previous_stage"] == 0 and to_won["changed_at"] == moves[1]["closed_at"]
    ids = [first["stage_change_id"], moves[0]["stage_change"]["stage_change_id"], to_won["stage_change_id"]]
    assert ids == sorted(set(ids))
    won, = [e["data"] for e in events(session, "opportunity.won")]
    assert (won["stage_outcome"], won["status"], won["version"]) == ("won", "won", 3)


def test_every_contract_event_carries_the_contract_at_its_new_version(session, as_alice, as_admin, customer_id):
    contracts = Contracts(session, as_alice)
    today = date.today()
    draft = contracts.create({"customer_id": customer_id, "title": "Support", "value": "1200.00", "currency": "CNY",
                              "start_date": (today - timedelta(days=1)).isoformat(),
                              "end_date": (today + timedelta(days=364)).isoformat()})
    contracts.update(draft["id"], {"value": "1500.00"})
    contracts.submit(draft["id"])
    Contracts(session, as_admin).approve(draft["id"])
    contracts.sign(draft["id"])
    published = [e for e in events(session) if e["type"].startswith("contract.")]
    assert [(e["type"], e["data"]["status"], e["data"]["version"]) for e in published] == [
        ("contract.created", "draft", 1), ("contract.updated", "draft", 2),
        ("contract.submitted", "pending_approval", 3), ("contract.approved", "approved", 4),
        ("contract.signed", "signed", 5), ("contract.activated", "active", 6)]
    for event in published:
        data = event["data"]
        assert (data["id"], data["customer_id"], data["owner_id"], data["owner_team_id"], data["currency"]) == \
            (draft["id"], customer_id, draft["owner_id"], "east", "CNY")
        assert data["title"] == "Support" and data["start_date"] == draft["start_date"] and data["end_date"]
    assert published[0]["data"]["value"] == "1200.00" and published[-1]["data"]["value"] == "1500.00"


# --- pages ----------------------------------------------------------------------------

def test_order_pages_walk_every_order_of_every_status_once_as_the_events_show_them(
        session, as_alice, as_bob, as_admin, customer_id):
    orders = Orders(session, as_alice)
    draft = new_order(session, as_alice, customer_id, confirm=False)
    confirmed = new_order(session, as_alice, customer_id)
    paid = new_order(session, as_alice, customer_id)
    orders.pay(paid["id"], {"amount": "113.00", "method": "card"})
    fulfilled = new_order(session, as_alice, customer_id)
    orders.pay(fulfilled["id"], {"amount": "113.00", "method": "card"})
    orders.fulfil(fulfilled["id"])
    cancelled = new_order(session, as_alice, customer_id)
    orders.cancel(cancelled["id"], {"reason": "No budget"})
    bobs = new_order(session, as_bob, known_customer(session, owner_id=as_bob.user_id))

    items, pages = walk(worker_factory(SalesService, db=session, context=as_admin), "orders", 2)
    assert pages == 3
    by_id = {item["id"]: item for item in items}
    assert len(items) == len(by_id) == 6
    assert {by_id[o["id"]]["status"] for o in (draft, confirmed, paid, fulfilled, cancelled, bobs)} == \
        {"draft", "confirmed", "paid", "fulfilled", "cancelled"}
    assert by_id[draft["id"]]["confirmed_at"] is None and by_id[draft["id"]]["lines"]
    # An order reads the same as its newest event, without the event's own extras.
    newest = {}
    for event in events(session):
        if event["type"].startswith("order."):
            newest[event["data"]["id"]] = event["data"]
    for order_id, data in newest.items():
        assert by_id[order_id] == {field: value for field, value in data.items() if field in by_id[order_id]}
        assert set(by_id[order_id]) >= ORDER_FIELDS


def test_opportunity_stage_change_and_contract_pages_match_the_events(session, as_alice, as_admin, customer_id):
    opportunities = Opportunities(session, as_alice)
    for title in ("A", "B", "C"):
        created = opportunities.create({"customer_id": customer_id, "title": title, "amount": "10.00",
                                        "currency": "CNY"}, owner_team_id="east")
        opportunities.move(created["id"], {"stage": "lost", "lost_reason": "Price"})
    contracts = Contracts(session, as_alice)
    for title in ("X", "Y"):
        contracts.create({"customer_id": customer_id, "title": title, "value": "5.00", "currency": "CNY",
                          "start_date": "2026-01-01", "end_date": "2026-12-31"})
    service = worker_factory(SalesService, db=session, context=as_admin)

    opportunity_items, _ = walk(service, "opportunities", 2)
    newest = {e["data"]["id"]: e["data"] for e in events(session) if e["type"] == "opportunity.stage_changed"}
    assert len(opportunity_items) == 3
    for item in opportunity_items:
        assert item == {field: value for field, value in newest[item["id"]].items() if field in item}
        assert (item["stage"], item["stage_position"], item["stage_outcome"]) == ("lost", 5, "lost")

    changes, pages = walk(service, "stage_changes", 4)
    published = [e["data"]["stage_change"] for e in events(session)
                 if e["type"] in ("opportunity.created", "opportunity.stage_changed")]
    assert pages == 2 and sorted(changes, key=lambda c: c["stage_change_id"]) == \
        sorted(published, key=lambda c: c["stage_change_id"])

    contract_items, _ = walk(service, "contracts", 1)
    created = {e["data"]["id"]: e["data"] for e in events(session, "contract.created")}
    assert {item["id"]: item for item in contract_items} == created


def test_only_admins_and_the_system_read_the_feed_and_bad_input_names_the_field(
        session, as_alice, as_east_manager, as_admin):
    for context in (as_alice, as_east_manager):
        service = worker_factory(SalesService, db=session, context=context)
        with pytest.raises(Forbidden):
            service.reporting_page("orders")
        with pytest.raises(Forbidden):
            service.reporting_totals()
    # Kinds and limits are RecordFeed's and feed_page's (tested in services/common).
    service = worker_factory(SalesService, db=session, context=as_admin)
    assert service.reporting_page("orders", None, 1000) == {"items": [], "next_cursor": None}


# --- totals ---------------------------------------------------------------------------

def test_totals_count_placed_orders_by_utc_month_of_confirmation_and_currency(
        session, as_alice, as_admin, customer_id):
    orders = Orders(session, as_alice)
    november = [new_order(session, as_alice, customer_id) for _ in range(2)]  # 113.00 each
    orders.pay(november[1]["id"], {"amount": "113.00", "method": "card"})
    late_night = new_order(session, as_alice, customer_id, list_price="20.00", tax_rate="0")
    dollars = new_order(session, as_alice, customer_id, list_price="9.50", tax_rate="0", currency="USD")
    new_order(session, as_alice, customer_id, confirm=False)  # a draft: not placed
    cancelled = new_order(session, as_alice, customer_id)
    orders.cancel(cancelled["id"], {"reason": "No budget"})
    confirmed_at = {november[0]["id"]: datetime(2026, 11, 1, 0, 0, tzinfo=timezone.utc),
                    november[1]["id"]: datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc),
                    dollars["id"]: datetime(2026, 11, 15, tzinfo=timezone.utc),
                    # The year's last half hour in UTC (already January in Beijing) counts in December.
                    late_night["id"]: datetime(2026, 12, 31, 23, 30, tzinfo=timezone.utc)}
    for order_id, at in confirmed_at.items():
        session.execute(update(Order.__table__).where(Order.__table__.c.id == order_id).values(confirmed_at=at))

    totals = worker_factory(SalesService, db=session, context=as_admin).reporting_totals()
    assert totals == {"orders": 4, "revenue_by_month": [
        {"month": "2026-11", "currency": "CNY", "orders": 2, "revenue": "226.00"},
        {"month": "2026-11", "currency": "USD", "orders": 1, "revenue": "9.50"},
        {"month": "2026-12", "currency": "CNY", "orders": 1, "revenue": "20.00"},
    ]}
