"""Products and price lists: who may change them, what they refuse, which price a customer gets."""
from datetime import date
from decimal import Decimal

import pytest

from crm_common.errors import Conflict, Forbidden, NotFound, ValidationFailed, VersionMismatch

from sales.catalogue import PriceLists, Products, price_list_price
from priced_records import known_customer, product


def test_an_admin_creates_a_product_everyone_reads_it(session, as_admin, as_viewer):
    created = Products(session, as_admin).create({
        "sku": " WID-1 ", "name": "Widget", "list_price": "1234.5", "currency": "cny", "tax_rate": 13})
    assert created["sku"] == "WID-1" and created["currency"] == "CNY"
    assert created["list_price"] == "1234.50" and created["tax_rate"] == "13"
    assert created["active"] is True and created["unit"] == "piece" and created["version"] == 1
    assert Products(session, as_viewer).get(created["id"])["name"] == "Widget"


@pytest.mark.parametrize("who", ["as_alice", "as_viewer"])
def test_sales_and_viewers_may_not_change_products(session, request, who):
    with pytest.raises(Forbidden):
        Products(session, request.getfixturevalue(who)).create(
            {"sku": "X", "name": "X", "list_price": "1", "currency": "CNY"})


def test_a_taken_sku_is_a_conflict_naming_sku(session, as_east_manager):
    product(session, sku="DUP-1")
    with pytest.raises(Conflict) as refused:
        Products(session, as_east_manager).create({"sku": "DUP-1", "name": "Y", "list_price": "1", "currency": "CNY"})
    assert "sku" in refused.value.errors


@pytest.mark.parametrize("field, value", [
    ("list_price", "-1"), ("list_price", "1.234"), ("list_price", 1e20), ("currency", "yuan"),
    ("tax_rate", "101"), ("tax_rate", "-1"), ("tax_rate", "12.345"), ("sku", "has space"), ("name", ""),
])
def test_bad_product_fields_are_refused_by_name(session, as_admin, field, value):
    data = {"sku": "OK-1", "name": "Widget", "list_price": "10", "currency": "CNY", field: value}
    with pytest.raises(ValidationFailed) as refused:
        Products(session, as_admin).create(data)
    assert field in refused.value.errors


def test_deactivating_is_a_versioned_update_and_a_filter(session, as_admin):
    widget = product(session, sku="ACT-1", name="Blue widget")
    product(session, sku="ACT-2", name="Red gadget")
    products = Products(session, as_admin)
    with pytest.raises(VersionMismatch):
        products.update(widget["id"], {"active": False}, expected_version=7)
    changed = products.update(widget["id"], {"active": False}, expected_version=1)
    assert changed["active"] is False and changed["version"] == 2
    assert [p["sku"] for p in products.list({"active": "false"})["items"]] == ["ACT-1"]
    assert [p["sku"] for p in products.list({"active": "true"})["items"]] == ["ACT-2"]
    assert [p["sku"] for p in products.list({"q": "GADGET"})["items"]] == ["ACT-2"]
    assert [p["sku"] for p in products.list({"q": "act-1"})["items"]] == ["ACT-1"]


def test_products_page_by_sku_with_a_cursor(session, as_admin):
    for number in range(5):
        product(session, sku=f"PAGE-{number}")
    products = Products(session, as_admin)
    first = products.list(limit=3)
    second = products.list(limit=3, cursor=first["next_cursor"])
    assert [p["sku"] for p in first["items"] + second["items"]] == [f"PAGE-{n}" for n in range(5)]
    assert second["next_cursor"] is None


def test_an_unknown_product_is_not_found(session, as_admin):
    with pytest.raises(NotFound):
        Products(session, as_admin).get("nope")


# --- price lists -------------------------------------------------------------

def test_a_price_list_applies_its_valid_price_to_its_customers(session, as_admin):
    customer_id = known_customer(session)
    widget = product(session)
    created = PriceLists(session, as_admin).create({
        "name": "Key accounts", "currency": "CNY", "customer_ids": [customer_id],
        "items": [{"product_id": widget["id"], "unit_price": "80", "valid_from": "2026-01-01",
                   "valid_to": "2026-06-30"},
                  {"product_id": widget["id"], "unit_price": "85.5", "valid_from": "2026-07-01"}]})
    assert created["customer_ids"] == [customer_id]
    assert [item["unit_price"] for item in created["items"]] == ["80.00", "85.50"]

    def price(on, currency="CNY", customer=customer_id):
        return price_list_price(session, customer, widget["id"], currency, on)
    assert price(date(2026, 3, 1)) == Decimal("80.00")
    assert price(date(2026, 6, 30)) == Decimal("80.00")
    assert price(date(2027, 1, 1)) == Decimal("85.50")
    assert price(date(2025, 12, 31)) is None
    assert price(date(2026, 3, 1), currency="USD") is None
    assert price(date(2026, 3, 1), customer=known_customer(session)) is None


def test_a_customer_is_in_at_most_one_price_list(session, as_admin):
    customer_id = known_customer(session)
    lists = PriceLists(session, as_admin)
    lists.create({"name": "A", "currency": "CNY", "customer_ids": [customer_id]})
    other = lists.create({"name": "B", "currency": "CNY"})
    with pytest.raises(Conflict) as refused:
        lists.update(other["id"], {"customer_ids": [customer_id]})
    assert "customer_ids" in refused.value.errors
    assert lists.get(other["id"])["customer_ids"] == []


def test_price_list_items_are_checked_by_name(session, as_admin):
    widget = product(session)
    lists = PriceLists(session, as_admin)
    with pytest.raises(ValidationFailed) as refused:
        lists.create({"name": "Bad", "currency": "CNY", "items": [
            {"product_id": widget["id"], "unit_price": "1", "valid_from": "2026-01-01"},
            {"product_id": widget["id"], "unit_price": "2", "valid_from": "2026-03-01"},
            {"product_id": "missing", "unit_price": "1", "valid_from": "2026-01-01"}]})
    assert set(refused.value.errors) == {"items.1.valid_from", "items.2.product_id"}
    with pytest.raises(ValidationFailed) as refused:
        lists.create({"name": "Bad", "currency": "CNY", "items": [
            {"product_id": widget["id"], "unit_price": "1", "valid_from": "2026-02-01", "valid_to": "2026-01-01"}]})
    assert "valid_to" in refused.value.errors["items"][0]
    with pytest.raises(ValidationFailed) as refused:
        lists.create({"name": "Bad", "currency": "CNY", "customer_ids": ["ghost"]})
    assert "customer_ids.0" in refused.value.errors


def test_replacing_items_is_one_new_version_and_only_managers_write(session, as_east_manager, as_alice):
    widget = product(session)
    lists = PriceLists(session, as_east_manager)
    created = lists.create({"name": "Spring", "currency": "CNY"})
    changed = lists.update(created["id"], {"items": [
        {"product_id": widget["id"], "unit_price": "9.99", "valid_from": "2026-03-01"}]}, expected_version=1)
    assert changed["version"] == 2 and len(changed["items"]) == 1
    with pytest.raises(Forbidden):
        PriceLists(session, as_alice).update(created["id"], {"name": "Mine"})
    assert [row["name"] for row in PriceLists(session, as_alice).list()["items"]] == ["Spring"]
