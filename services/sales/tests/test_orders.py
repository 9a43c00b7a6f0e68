"""Orders: draft -> confirmed -> paid -> fulfilled or cancelled, payments that never overpay, and the events."""
import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import func, select

from crm_common.errors import Conflict, Forbidden, NotFound, ValidationFailed

from sales.models import Payment
from sales.orders import Orders
from sales.service import SalesService
from priced_records import events, known_customer, product


@pytest.fixture
def customer_id(session):
    return known_customer(session)


@pytest.fixture
def order(session, as_alice, customer_id):
    """A confirmed order of 113.00 CNY (100.00 + 13% tax)."""
    widget = product(session, list_price="100.00", tax_rate="13")
    orders = Orders(session, as_alice)
    created = orders.create({"customer_id": customer_id, "lines": [{"product_id": widget["id"], "quantity": 1}]})
    return orders.confirm(created["id"])


def pay(session, context, order_id, amount, method="bank_transfer", **fields):
    return Orders(session, context).pay(order_id, {"amount": amount, "method": method, **fields})


def test_a_direct_order_is_a_draft_until_confirmed_and_then_placed(session, as_alice, customer_id):
    widget = product(session, list_price="10.00", tax_rate="0")
    orders = Orders(session, as_alice)
    created = orders.create({"customer_id": customer_id, "lines": [{"product_id": widget["id"], "quantity": 2}],
                             "notes": "Rush"})
    assert (created["status"], created["total"], created["payment_status"]) == ("draft", "20.00", "unpaid")
    assert events(session, "order.placed") == []
    with pytest.raises(Conflict):
        pay(session, as_alice, created["id"], "1.00")
    confirmed = orders.confirm(created["id"])
    assert confirmed["status"] == "confirmed" and confirmed["confirmed_at"] and confirmed["version"] == 2
    placed, = events(session, "order.placed")
    assert placed["data"]["lines"] == [{
        "position": 1, "product_id": widget["id"], "sku": widget["sku"], "description": "Widget",
        "quantity": "2", "unit_price": "10.00", "subtotal": "20.00", "discount": "0.00", "tax": "0.00",
        "total": "20.00"}]
    assert placed["data"]["total"] == "20.00" and placed["data"]["currency"] == "CNY"
    with pytest.raises(Conflict) as refused:
        orders.confirm(created["id"])
    assert refused.value.extra == {"current_status": "confirmed"}


def test_payments_accumulate_until_the_order_is_paid_then_fulfilled(session, as_alice, order):
    first = pay(session, as_alice, order["id"], "50.00", reference="INV-1")
    assert first["amount"] == "50.00" and first["reference"] == "INV-1"
    assert (first["order"]["paid_amount"], first["order"]["outstanding"], first["order"]["payment_status"],
            first["order"]["status"]) == ("50.00", "63.00", "partial", "confirmed")
    second = pay(session, as_alice, order["id"], "63", method="card")
    assert (second["order"]["paid_amount"], second["order"]["outstanding"], second["order"]["payment_status"],
            second["order"]["status"]) == ("113.00", "0.00", "paid", "paid")
    assert second["order"]["paid_at"] is not None
    paid = [event["data"] for event in events(session, "order.paid")]
    assert [(e["amount"], e["paid_amount"], e["outstanding"], e["fully_paid"]) for e in paid] == [
        ("50.00", "50.00", "63.00", False), ("63.00", "113.00", "0.00", True)]
    listed = Orders(session, as_alice).payments(order["id"])["items"]
    assert [p["amount"] for p in listed] == ["50.00", "63.00"]
    fulfilled = Orders(session, as_alice).fulfil(order["id"])
    assert fulfilled["status"] == "fulfilled" and fulfilled["fulfilled_at"]
    with pytest.raises(Conflict):
        Orders(session, as_alice).cancel(order["id"], {"reason": "Changed mind"})


def test_a_payment_beyond_the_outstanding_amount_is_refused_naming_amount(session, as_alice, order):
    pay(session, as_alice, order["id"], "100.00")
    with pytest.raises(ValidationFailed) as refused:
        pay(session, as_alice, order["id"], "13.01")
    assert "amount" in refused.value.errors and "13.00" in refused.value.detail
    assert session.execute(select(func.count()).select_from(Payment)).scalar_one() == 1
    assert Orders(session, as_alice).get(order["id"])["paid_amount"] == "100.00"


@pytest.mark.parametrize("payment, field", [
    ({"amount": "0", "method": "cash"}, "amount"),
    ({"amount": "-5", "method": "cash"}, "amount"),
    ({"amount": "1.001", "method": "cash"}, "amount"),
    ({"amount": "5", "method": "barter"}, "method"),
    ({"method": "cash"}, "amount"),
    ({"amount": "5", "method": "cash", "paid_at": "yesterday"}, "paid_at"),
])
def test_bad_payments_are_refused_by_field(session, as_alice, order, payment, field):
    with pytest.raises(ValidationFailed) as refused:
        Orders(session, as_alice).pay(order["id"], payment)
    assert field in refused.value.errors


def test_a_currency_without_cents_takes_whole_payments(session, as_alice, customer_id):
    yen = product(session, list_price="1000", currency="JPY", tax_rate="10")
    orders = Orders(session, as_alice)
    order = orders.confirm(orders.create({"customer_id": customer_id,
                                          "lines": [{"product_id": yen["id"], "quantity": 1}]})["id"])
    assert order["total"] == "1100.00" and order["currency"] == "JPY"
    with pytest.raises(ValidationFailed) as refused:
        pay(session, as_alice, order["id"], "0.50")
    assert "amount" in refused.value.errors


def test_cancelling_needs_a_reason_and_a_cancelled_order_cannot_be_paid(session, as_alice, order):
    orders = Orders(session, as_alice)
    with pytest.raises(ValidationFailed) as refused:
        orders.cancel(order["id"], {"reason": "  "})
    assert "reason" in refused.value.errors
    cancelled = orders.cancel(order["id"], {"reason": "Customer withdrew"})
    assert (cancelled["status"], cancelled["cancel_reason"]) == ("cancelled", "Customer withdrew")
    event, = events(session, "order.cancelled")
    assert event["data"]["reason"] == "Customer withdrew" and event["data"]["total"] == "113.00"
    assert event["data"]["was_placed"] is True
    with pytest.raises(Conflict) as refused:
        pay(session, as_alice, order["id"], "1.00")
    assert refused.value.extra == {"current_status": "cancelled"}


def test_a_partly_paid_order_is_not_cancelled(session, as_alice, order):
    pay(session, as_alice, order["id"], "10.00")
    with pytest.raises(Conflict) as refused:
        Orders(session, as_alice).cancel(order["id"], {"reason": "Too late"})
    assert "partly paid" in refused.value.detail
    assert Orders(session, as_alice).get(order["id"])["status"] == "confirmed"


def test_orders_follow_the_owner_rules(session, as_alice, as_bob, as_east_manager, as_viewer, order, customer_id):
    with pytest.raises(NotFound):
        Orders(session, as_bob).get(order["id"])
    with pytest.raises(NotFound):
        pay(session, as_bob, order["id"], "1.00")
    with pytest.raises(Forbidden):
        pay(session, as_viewer, order["id"], "1.00")
    assert Orders(session, as_east_manager).list({"customer_id": customer_id})["items"][0]["id"] == order["id"]
    assert Orders(session, as_bob).list({"customer_id": customer_id})["items"] == []
    assert Orders(session, as_alice).list({"customer_id": known_customer(session)})["items"] == []
    assert [o["id"] for o in Orders(session, as_viewer).list({"status": "confirmed"})["items"]] == [order["id"]]


def test_the_service_entrypoints_run_the_order_flow(session, as_alice, customer_id):
    service = worker_factory(SalesService, db=session, context=as_alice)
    widget = product(session, list_price="5.00", tax_rate="0")
    quote = service.create_quote({"customer_id": customer_id, "lines": [{"product_id": widget["id"], "quantity": 4}]},
                                 "east")
    assert service.send_quote(quote["id"])["status"] == "sent"
    order = service.accept_quote(quote["id"])
    assert service.pay_order(order["id"], {"amount": "20", "method": "cash"})["order"]["status"] == "paid"
    assert service.fulfil_order(order["id"])["status"] == "fulfilled"
    assert [o["id"] for o in service.list_orders({"customer_id": customer_id})["items"]] == [order["id"]]
    assert service.get_product(widget["id"])["sku"] == widget["sku"]
    assert len(service.list_payments(order["id"])["items"]) == 1
