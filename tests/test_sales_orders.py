"""Selling end to end over HTTP: a product, a quote, its order, its payments; the refusals; parallel payments."""
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest

from api_helpers import assert_problem
from conftest import wait_until


def new_product(api, list_price="19.99", tax_rate="13", currency="CNY"):
    created = api.post("/products", json={"sku": f"E2E-{secrets.token_hex(4)}", "name": "Industrial widget",
                                          "unit": "piece", "list_price": list_price, "currency": currency,
                                          "tax_rate": tax_rate})
    assert created.status_code == 201, created.text
    return created.json()


def new_customer(api):
    created = api.post("/customers", json={"kind": "company", "name": f"Sales E2E {secrets.token_hex(3)}"})
    assert created.status_code == 201, created.text
    return created.json()


def once_sales_knows(customer, post):
    """``post()`` retried until the sales replica has the customer (it arrives by event a moment later)."""
    def attempt():
        response = post()
        if response.status_code == 422 and "customer_id" in response.json().get("errors", {}):
            return None
        return response
    return wait_until(attempt, 15, interval=0.2, message=f"sales to know customer {customer['id']}")


@pytest.fixture
def rep(make_user):
    return make_user("sales", team_id="east")


@pytest.fixture
def seller(admin, rep):
    """A product, and a customer of the rep's that sales knows: (product, customer)."""
    product = new_product(admin)
    customer = new_customer(rep)
    draft = once_sales_knows(customer, lambda: rep.post("/orders", json={
        "customer_id": customer["id"], "lines": [{"product_id": product["id"], "quantity": 1}]}))
    assert draft.status_code == 201, draft.text
    return product, customer


def confirmed_order(rep, product, customer, quantity):
    order = rep.post("/orders", json={"customer_id": customer["id"],
                                      "lines": [{"product_id": product["id"], "quantity": quantity}]})
    assert order.status_code == 201, order.text
    confirmed = rep.post(f"/orders/{order.json()['id']}/confirm")
    assert confirmed.status_code == 200, confirmed.text
    return confirmed.json()


def test_a_quote_becomes_an_order_that_two_payments_pay(admin, rep, make_user, seller):
    product, customer = seller
    created = rep.post("/quotes", json={
        "customer_id": customer["id"], "valid_until": "2999-12-31", "notes": "Volume offer",
        "lines": [{"product_id": product["id"], "quantity": "3", "discount_percent": "10"},
                  {"description": "On-site installation", "quantity": "1.5", "unit_price": "80.00",
                   "tax_rate": "6"}]})
    assert created.status_code == 201, created.text
    quote = created.json()
    assert created.headers["Location"].endswith(f"/quotes/{quote['id']}")
    assert [line["total"] for line in quote["lines"]] == ["60.99", "127.20"]
    assert (quote["subtotal"], quote["discount_total"], quote["tax_total"], quote["total"]) == (
        "179.97", "6.00", "14.22", "188.19")

    edited = rep.patch(f"/quotes/{quote['id']}", json={"notes": "Volume offer, 30 days"},
                       headers={"If-Match": created.headers["ETag"]})
    assert edited.status_code == 200, edited.text
    stale = rep.patch(f"/quotes/{quote['id']}", json={"notes": "x"}, headers={"If-Match": created.headers["ETag"]})
    assert_problem(stale, 412)

    assert rep.post(f"/quotes/{quote['id']}/send").json()["status"] == "sent"
    assert_problem(rep.patch(f"/quotes/{quote['id']}", json={"notes": "late"}), 409)
    accepted = rep.post(f"/quotes/{quote['id']}/accept")
    assert accepted.status_code == 201, accepted.text
    order = accepted.json()
    assert (order["status"], order["quote_id"], order["total"], order["payment_status"]) == (
        "confirmed", quote["id"], "188.19", "unpaid")
    assert accepted.headers["Location"].endswith(f"/orders/{order['id']}")
    again = assert_problem(rep.post(f"/quotes/{quote['id']}/accept"), 409)
    assert again["current_status"] == "accepted" and "accepted" in again["detail"]
    assert rep.get(f"/quotes/{quote['id']}").json()["order_id"] == order["id"]

    first = rep.post(f"/orders/{order['id']}/payments", json={"amount": "88.19", "method": "bank_transfer",
                                                              "reference": "TT-001"})
    assert first.status_code == 201, first.text
    assert (first.json()["order"]["payment_status"], first.json()["order"]["outstanding"]) == ("partial", "100.00")
    overpay = assert_problem(rep.post(f"/orders/{order['id']}/payments",
                                      json={"amount": "100.01", "method": "card"}), 422, "amount")
    assert "100.00" in overpay["detail"]
    second = rep.post(f"/orders/{order['id']}/payments", json={"amount": "100.00", "method": "card"})
    assert second.status_code == 201, second.text
    paid = rep.get(f"/orders/{order['id']}").json()
    assert (paid["status"], paid["paid_amount"], paid["outstanding"], paid["payment_status"]) == (
        "paid", "188.19", "0.00", "paid")
    assert [p["amount"] for p in rep.get(f"/orders/{order['id']}/payments").json()["items"]] == ["88.19", "100.00"]
    assert rep.post(f"/orders/{order['id']}/fulfil").json()["status"] == "fulfilled"

    # The customer's orders through the gateway: the rep's own; another team's rep does not see the customer.
    listed = rep.get(f"/customers/{customer['id']}/orders").json()["items"]
    assert order["id"] in [row["id"] for row in listed]
    outsider = make_user("sales", team_id="west")
    assert_problem(outsider.get(f"/customers/{customer['id']}/orders"), 404)
    assert_problem(outsider.get(f"/orders/{order['id']}"), 404)


def test_refusals_are_problems_naming_the_field_and_write_nothing(admin, rep, make_user, seller):
    product, customer = seller
    dollars = new_product(admin, list_price="5.00", currency="USD")
    bad_line = rep.post("/quotes", json={"customer_id": customer["id"], "lines": [
        {"product_id": product["id"], "quantity": 1}, {"product_id": dollars["id"], "quantity": 1}]})
    assert_problem(bad_line, 422, "lines.1.product_id")
    assert_problem(rep.post("/quotes", json={"customer_id": customer["id"], "lines": []}), 422, "lines")
    assert_problem(rep.post("/quotes", json={"customer_id": customer["id"], "lines": [
        {"product_id": product["id"], "quantity": "-1"}]}), 422, "lines")
    assert_problem(rep.post("/quotes", json={"customer_id": "00000000-0000-4000-8000-000000000000", "lines": [
        {"product_id": product["id"], "quantity": 1}]}), 422, "customer_id")
    assert rep.get("/quotes", params={"customer_id": customer["id"]}).json()["items"] == []

    order = confirmed_order(rep, product, customer, 1)
    assert_problem(rep.post(f"/orders/{order['id']}/cancel", json={}), 422, "reason")
    cancelled = rep.post(f"/orders/{order['id']}/cancel", json={"reason": "Customer withdrew"})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    refused = assert_problem(rep.post(f"/orders/{order['id']}/payments",
                                      json={"amount": "1.00", "method": "cash"}), 409)
    assert refused["current_status"] == "cancelled"
    assert rep.get(f"/orders/{order['id']}/payments").json()["items"] == []

    assert_problem(rep.post("/products", json={"sku": "X-1", "name": "X", "list_price": "1", "currency": "CNY"}), 403)
    assert_problem(admin.post("/products", json={"sku": product["sku"], "name": "Copy", "list_price": "1",
                                                 "currency": "CNY"}), 409)
    viewer = make_user("viewer")
    assert_problem(viewer.post(f"/orders/{order['id']}/cancel", json={"reason": "no"}), 403)


def test_a_price_list_prices_its_customers_quotes(admin, rep, seller):
    product, customer = seller
    listed = admin.post("/price-lists", json={
        "name": f"Key accounts {secrets.token_hex(3)}", "currency": "CNY", "customer_ids": [customer["id"]],
        "items": [{"product_id": product["id"], "unit_price": "15.00", "valid_from": "2020-01-01"}]})
    assert listed.status_code == 201, listed.text
    taken = admin.post("/price-lists", json={"name": f"Other {secrets.token_hex(3)}", "currency": "CNY",
                                             "customer_ids": [customer["id"]]})
    assert_problem(taken, 409)
    quote = rep.post("/quotes", json={"customer_id": customer["id"],
                                      "lines": [{"product_id": product["id"], "quantity": 2}]})
    assert quote.status_code == 201, quote.text
    assert quote.json()["lines"][0]["unit_price"] == "15.00"


def test_parallel_payments_never_overpay_an_order(rep, seller):
    product, customer = seller
    order = confirmed_order(rep, product, customer, 4)  # 4 x 19.99 + 13% tax = 90.35
    assert order["total"] == "90.35"

    payments = 12
    start = threading.Barrier(payments)

    def pay(_):
        start.wait(timeout=10)  # all at once, not one after the other as the pool gets going
        return rep.post(f"/orders/{order['id']}/payments", json={"amount": "10.00", "method": "card"}, timeout=30)

    with ThreadPoolExecutor(max_workers=payments) as pool:
        responses = list(pool.map(pay, range(payments)))
    statuses = sorted(response.status_code for response in responses)
    # Payments of one order queue on its row lock: each sees what the others paid, so the ones
    # that fit are all accepted and the rest are refused as more than what is outstanding.
    assert statuses == [201] * 9 + [422] * 3, [r.text for r in responses]
    accepted = [Decimal(r.json()["amount"]) for r in responses if r.status_code == 201]

    final = rep.get(f"/orders/{order['id']}").json()
    assert Decimal(final["paid_amount"]) <= Decimal(final["total"])
    assert sum(accepted) == Decimal(final["paid_amount"]) == Decimal("90.00")
    recorded = rep.get(f"/orders/{order['id']}/payments").json()["items"]
    assert sum(Decimal(p["amount"]) for p in recorded) == Decimal(final["paid_amount"])
