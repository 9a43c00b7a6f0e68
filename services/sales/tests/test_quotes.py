"""Quotes: priced lines, the draft -> sent -> accepted | rejected | expired states, and the order of an accept."""
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from crm_common.errors import Conflict, Forbidden, NotFound, ValidationFailed, VersionMismatch
from crm_common.types import utcnow

from sales.catalogue import PriceLists
from sales.models import CustomerReplica, Opportunity, Order, Pipeline, PipelineStage, Quote
from sales.quotes import Quotes
from priced_records import AS_ADMIN, events, known_customer, product


def later(days):
    return (utcnow().date() + timedelta(days=days)).isoformat()


@pytest.fixture
def widget(session):
    return product(session, list_price="19.99", tax_rate="13")


@pytest.fixture
def customer_id(session):
    return known_customer(session)


def draft(session, context, customer_id, lines, **fields):
    return Quotes(session, context).create({"customer_id": customer_id, "lines": lines, **fields})


def test_a_quote_prices_its_lines_and_totals_from_the_rounded_lines(session, as_alice, widget, customer_id):
    quote = draft(session, as_alice, customer_id, [
        {"product_id": widget["id"], "quantity": "3", "discount_percent": "10"},
        {"description": "Installation", "quantity": 1.5, "unit_price": "80", "tax_rate": "6"},
    ], valid_until=later(30), notes="Spring offer")
    assert quote["status"] == "draft" and quote["currency"] == "CNY"
    assert quote["owner_id"] == as_alice.user_id and quote["owner_team_id"] == "east"
    first, second = quote["lines"]
    assert (first["description"], first["sku"], first["unit_price"], first["tax_rate"]) == (
        "Widget", widget["sku"], "19.99", "13")
    assert (first["subtotal"], first["discount"], first["tax"], first["total"]) == ("59.97", "6.00", "7.02", "60.99")
    assert (second["quantity"], second["subtotal"], second["tax"], second["total"]) == (
        "1.5", "120.00", "7.20", "127.20")
    assert (quote["subtotal"], quote["discount_total"], quote["tax_total"], quote["total"]) == (
        "179.97", "6.00", "14.22", "188.19")


def test_a_customers_price_list_sets_the_unit_price(session, as_alice, widget, customer_id):
    PriceLists(session, AS_ADMIN).create({"name": "VIP", "currency": "CNY", "customer_ids": [customer_id], "items": [
        {"product_id": widget["id"], "unit_price": "15.00", "valid_from": later(-10), "valid_to": later(10)}]})
    quote = draft(session, as_alice, customer_id, [{"product_id": widget["id"], "quantity": 2},
                                                   {"product_id": widget["id"], "quantity": 1, "unit_price": "18"}])
    assert [line["unit_price"] for line in quote["lines"]] == ["15.00", "18.00"]
    other = draft(session, as_alice, known_customer(session), [{"product_id": widget["id"], "quantity": 2}])
    assert other["lines"][0]["unit_price"] == "19.99"


def test_a_product_in_another_currency_needs_a_price_in_the_quotes(session, as_alice, widget, customer_id):
    dollars = product(session, list_price="5.00", currency="USD")
    with pytest.raises(ValidationFailed) as refused:
        draft(session, as_alice, customer_id, [{"product_id": widget["id"], "quantity": 1},
                                               {"product_id": dollars["id"], "quantity": 1}])
    assert set(refused.value.errors) == {"lines.1.product_id"}
    PriceLists(session, AS_ADMIN).create({"name": "CNY list", "currency": "CNY", "customer_ids": [customer_id],
                                          "items": [{"product_id": dollars["id"], "unit_price": "36",
                                                     "valid_from": later(-1)}]})
    quote = draft(session, as_alice, customer_id, [{"product_id": widget["id"], "quantity": 1},
                                                   {"product_id": dollars["id"], "quantity": 1}])
    assert quote["lines"][1]["unit_price"] == "36.00"
    assert session.execute(select(func.count()).select_from(Quote)).scalar_one() == 1


@pytest.mark.parametrize("lines, field", [
    ([], "lines"),
    ([{"quantity": 1}] * 201, "lines"),
    ([{"product_id": "ghost", "quantity": 1}], "lines.0.product_id"),
    ([{"description": "Work", "quantity": 1}], "lines"),
    ([{"description": "Work", "quantity": 0, "unit_price": "1"}], "lines"),
    ([{"description": "Work", "quantity": "1.0001", "unit_price": "1"}], "lines"),
    ([{"description": "Work", "quantity": 1, "unit_price": "1", "discount_percent": 101}], "lines"),
])
def test_bad_lines_are_refused_naming_them(session, as_alice, customer_id, lines, field):
    with pytest.raises(ValidationFailed) as refused:
        draft(session, as_alice, customer_id, lines, currency="CNY")
    assert field in refused.value.errors


def test_an_unknown_or_deleted_customer_is_refused(session, as_alice, widget):
    for customer_id in ("ghost", known_customer(session, deleted=True)):
        with pytest.raises(ValidationFailed) as refused:
            draft(session, as_alice, customer_id, [{"product_id": widget["id"], "quantity": 1}])
        assert "customer_id" in refused.value.errors


def test_the_opportunity_must_be_the_same_customers(session, as_alice, widget, customer_id):
    session.add(Pipeline(id="p", name="Default"))
    session.add(PipelineStage(id="s", pipeline_id="p", key="qualification", name="Qualification", position=1,
                              probability=10, outcome="open"))
    session.flush()
    session.execute(Opportunity.__table__.insert().values(
        id="00000000-0000-4000-8000-0000000000a1", customer_id=known_customer(session), pipeline_id="p",
        stage_id="s", title="Big deal", amount=Decimal(1), currency="CNY", probability=10, status="open",
        stage_entered_at=utcnow(), created_at=utcnow(), updated_at=utcnow(), version=1))
    with pytest.raises(ValidationFailed) as refused:
        draft(session, as_alice, customer_id, [{"product_id": widget["id"], "quantity": 1}],
              opportunity_id="00000000-0000-4000-8000-0000000000a1")
    assert "opportunity_id" in refused.value.errors


def test_only_a_draft_is_edited_and_edits_reprice(session, as_alice, widget, customer_id):
    quotes = Quotes(session, as_alice)
    quote = draft(session, as_alice, customer_id, [{"product_id": widget["id"], "quantity": 1}])
    with pytest.raises(VersionMismatch):
        quotes.update(quote["id"], {"notes": "x"}, expected_version=5)
    changed = quotes.update(quote["id"], {"lines": [{"product_id": widget["id"], "quantity": 2}]}, expected_version=1)
    assert changed["total"] == "45.18" and changed["version"] == 2 and len(changed["lines"]) == 1
    quotes.send(quote["id"])
    with pytest.raises(Conflict) as refused:
        quotes.update(quote["id"], {"notes": "too late"})
    assert "sent" in refused.value.detail and refused.value.extra == {"current_status": "sent"}


def test_accepting_a_sent_quote_creates_its_confirmed_order_once(session, as_alice, widget, customer_id):
    quotes = Quotes(session, as_alice)
    quote = draft(session, as_alice, customer_id, [{"product_id": widget["id"], "quantity": 3}],
                  valid_until=later(7))
    with pytest.raises(Conflict):
        quotes.accept(quote["id"])  # still a draft
    quotes.send(quote["id"])
    order = quotes.accept(quote["id"])
    assert order["status"] == "confirmed" and order["quote_id"] == quote["id"]
    assert order["total"] == quote["total"] and order["payment_status"] == "unpaid"
    assert [line["total"] for line in order["lines"]] == [line["total"] for line in quote["lines"]]
    assert quotes.get(quote["id"])["status"] == "accepted" and quotes.get(quote["id"])["order_id"] == order["id"]
    with pytest.raises(Conflict) as refused:
        quotes.accept(quote["id"])
    assert refused.value.extra == {"current_status": "accepted"}
    assert session.execute(select(func.count()).select_from(Order)).scalar_one() == 1
    placed, = events(session, "order.placed")
    assert placed["data"]["total"] == quote["total"] and placed["data"]["lines"][0]["sku"] == widget["sku"]
    assert placed["data"]["customer_id"] == customer_id and placed["data"]["owner_team_id"] == "east"
    assert [e["type"] for e in events(session)] == ["quote.sent", "order.placed", "quote.accepted"]


def test_a_sent_quote_past_valid_until_is_expired(session, as_alice, widget, customer_id):
    quotes = Quotes(session, as_alice)
    quote = draft(session, as_alice, customer_id, [{"product_id": widget["id"], "quantity": 1}],
                  valid_until=later(1))
    other = draft(session, as_alice, customer_id, [{"product_id": widget["id"], "quantity": 1}])
    quotes.send(quote["id"])
    quotes.send(other["id"])
    session.get(Quote, quote["id"]).valid_until = utcnow().date() - timedelta(days=1)  # time passes
    session.flush()
    assert quotes.get(quote["id"])["status"] == "expired"
    with pytest.raises(Conflict) as refused:
        quotes.accept(quote["id"])
    assert "expired" in refused.value.detail
    assert [q["id"] for q in quotes.list({"status": "expired"})["items"]] == [quote["id"]]
    assert [q["id"] for q in quotes.list({"status": "sent"})["items"]] == [other["id"]]


def test_a_quote_cannot_be_sent_already_expired(session, as_alice, widget, customer_id):
    quote = draft(session, as_alice, customer_id, [{"product_id": widget["id"], "quantity": 1}],
                  valid_until=later(-1))
    with pytest.raises(ValidationFailed) as refused:
        Quotes(session, as_alice).send(quote["id"])
    assert "valid_until" in refused.value.errors


def test_rejecting_needs_a_reason_and_a_sent_quote(session, as_alice, widget, customer_id):
    quotes = Quotes(session, as_alice)
    quote = draft(session, as_alice, customer_id, [{"product_id": widget["id"], "quantity": 1}])
    with pytest.raises(Conflict):
        quotes.reject(quote["id"], {"reason": "Too dear"})
    quotes.send(quote["id"])
    with pytest.raises(ValidationFailed) as refused:
        quotes.reject(quote["id"], {})
    assert "reason" in refused.value.errors
    rejected = quotes.reject(quote["id"], {"reason": "Too dear"})
    assert rejected["status"] == "rejected" and rejected["rejected_reason"] == "Too dear"
    with pytest.raises(Conflict):
        quotes.accept(quote["id"])


def test_quotes_follow_the_owner_rules(session, as_alice, as_bob, as_east_manager, as_viewer, widget, customer_id):
    quote = draft(session, as_alice, customer_id, [{"product_id": widget["id"], "quantity": 1}])
    with pytest.raises(NotFound):
        Quotes(session, as_bob).get(quote["id"])
    with pytest.raises(NotFound):
        Quotes(session, as_bob).send(quote["id"])
    assert Quotes(session, as_east_manager).get(quote["id"])["id"] == quote["id"]
    assert Quotes(session, as_viewer).get(quote["id"])["id"] == quote["id"]
    with pytest.raises(Forbidden):
        Quotes(session, as_viewer).send(quote["id"])
    assert Quotes(session, as_bob).list()["items"] == []
    with pytest.raises(ValidationFailed) as refused:
        draft(session, as_alice, customer_id, [{"product_id": widget["id"], "quantity": 1}],
              owner_id=as_bob.user_id)
    assert "owner_id" in refused.value.errors


def test_a_quote_of_a_customer_deleted_since_is_not_accepted(session, as_alice, widget, customer_id):
    quotes = Quotes(session, as_alice)
    quote = draft(session, as_alice, customer_id, [{"product_id": widget["id"], "quantity": 1}])
    quotes.send(quote["id"])
    session.get(CustomerReplica, customer_id).deleted = True
    with pytest.raises(ValidationFailed) as refused:
        quotes.accept(quote["id"])
    assert "customer_id" in refused.value.errors
