"""Personal data rights in sales: the export, and the scrub on customer.erased that keeps the accounts."""
import json
import uuid
from datetime import date, timedelta

import pytest
from sqlalchemy import select, update

from crm_common.errors import Forbidden
from crm_common.outbox import outbox_table
from crm_common.types import utcnow

from sales import storage
from sales.contracts import Contracts
from sales.models import ContractStatusChange, CustomerReplica, OpportunityStageChange
from sales.orders import Orders
from sales.personal_data import personal_data, scrub_customer
from sales.pipeline import Opportunities
from sales.quotes import Quotes
from priced_records import known_customer, product

NAME = "Wang Xiaoming"


@pytest.fixture
def records(session, as_alice, tmp_path):
    """A customer with an opportunity, a quote, a paid order and a contract, all naming them."""
    customer_id = known_customer(session)
    other_id = known_customer(session)
    widget = product(session, list_price="100.00", tax_rate="13")
    opportunity = Opportunities(session, as_alice).create(
        {"customer_id": customer_id, "title": f"Licences for {NAME}", "amount": "1200.00", "currency": "CNY",
         "next_step": f"Call {NAME}"}, owner_team_id="east")
    Opportunities(session, as_alice).move(opportunity["id"], {"stage": "proposal", "note": f"{NAME} is keen"})
    quote = Quotes(session, as_alice).create({"customer_id": customer_id, "notes": f"For {NAME}",
                                              "lines": [{"product_id": widget["id"], "quantity": 1}]})
    orders = Orders(session, as_alice)
    order = orders.create({"customer_id": customer_id, "notes": f"Deliver to {NAME}",
                           "lines": [{"product_id": widget["id"], "quantity": 2}]})
    orders.confirm(order["id"])
    orders.pay(order["id"], {"amount": "100.00", "method": "bank_transfer", "reference": "TX-1"})
    other_order = orders.create({"customer_id": other_id, "notes": "Other customer's note",
                                 "lines": [{"product_id": widget["id"], "quantity": 1}]})
    orders.confirm(other_order["id"])
    contract = Contracts(session, as_alice, storage.LocalDiskStore(tmp_path)).create({
        "customer_id": customer_id, "title": f"Support for {NAME}", "value": "5000.00", "currency": "CNY",
        "start_date": date.today().isoformat(), "end_date": (date.today() + timedelta(days=365)).isoformat(),
        "renewal_terms": "Renews yearly"})
    session.flush()
    return {"customer_id": customer_id, "other_id": other_id, "opportunity": opportunity, "quote": quote,
            "order": order, "other_order": other_order, "contract": contract}


def erased_event(customer_id, name="Erased customer"):
    return {"event_id": str(uuid.uuid4()), "type": "customer.erased", "version": 1,
            "occurred_at": utcnow().isoformat(), "producer": "customers",
            "actor": {"user_id": None, "role": "admin", "team_id": None}, "request_id": "r-erase",
            "data": {"customer_id": customer_id, "name": name}}


def test_export_holds_every_sales_record_of_the_customer(session, as_admin, records):
    data = personal_data(session, as_admin, records["customer_id"])
    assert [o["title"] for o in data["opportunities"]] == [f"Licences for {NAME}"]
    assert data["opportunities"][0]["stage_changes"][-1]["note"] == f"{NAME} is keen"
    assert [q["id"] for q in data["quotes"]] == [records["quote"]["id"]]
    [order] = data["orders"]
    assert order["id"] == records["order"]["id"] and len(order["lines"]) == 1
    assert [p["amount"] for p in order["payments"]] == ["100.00"]
    assert [c["title"] for c in data["contracts"]] == [f"Support for {NAME}"]
    assert data["customer_replica"]["id"] == records["customer_id"]
    assert records["other_order"]["id"] not in json.dumps(data)


def test_export_is_for_admins_only(session, as_alice, records):
    with pytest.raises(Forbidden):
        personal_data(session, as_alice, records["customer_id"])


def test_erasure_scrubs_free_text_and_keeps_orders_lines_payments_and_amounts(session, as_admin, records):
    before = personal_data(session, as_admin, records["customer_id"])
    session.execute(update(outbox_table).values(published_at=utcnow()))
    assert scrub_customer(session, erased_event(records["customer_id"], "Erased customer 1234abcd")) == 4
    after = personal_data(session, as_admin, records["customer_id"])
    assert NAME not in json.dumps(after)
    assert after["opportunities"][0]["title"] == "[erased]"
    assert after["opportunities"][0]["next_step"] == "[erased]"
    assert after["opportunities"][0]["lost_reason"] is None
    assert after["opportunities"][0]["amount"] == before["opportunities"][0]["amount"]
    assert after["quotes"][0]["notes"] == "[erased]" and after["quotes"][0]["total"] == before["quotes"][0]["total"]
    [order], [old_order] = after["orders"], before["orders"]
    assert order["notes"] == "[erased]"
    for field in ("total", "subtotal", "tax_total", "paid_amount", "status", "currency", "lines"):
        assert order[field] == old_order[field]
    assert order["payments"] == old_order["payments"]
    assert order["version"] == old_order["version"] + 1
    assert after["contracts"][0]["title"] == "[erased]"
    assert after["contracts"][0]["value"] == before["contracts"][0]["value"]
    assert after["contracts"][0]["renewal_terms"] == "Renews yearly"
    assert after["customer_replica"]["name"] == "Erased customer 1234abcd"
    notes = session.execute(select(OpportunityStageChange.note)).scalars().all()
    assert NAME not in json.dumps(notes)
    # Another customer's records are untouched, and so are sales' events about them.
    assert Orders(session, as_admin).get(records["other_order"]["id"])["notes"] == "Other customer's note"
    remaining = " ".join(session.execute(select(outbox_table.c.payload)).scalars())
    assert records["customer_id"] not in remaining
    assert records["other_id"] in remaining


def test_a_redelivered_erasure_changes_nothing(session, as_admin, records):
    event = erased_event(records["customer_id"])
    scrub_customer(session, event)
    version = personal_data(session, as_admin, records["customer_id"])["orders"][0]["version"]
    assert scrub_customer(session, event) is None
    assert personal_data(session, as_admin, records["customer_id"])["orders"][0]["version"] == version


def test_contract_status_change_notes_are_scrubbed(session, as_admin, records):
    session.add(ContractStatusChange(contract_id=records["contract"]["id"], from_status="draft",
                                     to_status="pending_approval", note=f"{NAME} wants it fast",
                                     changed_at=utcnow()))
    session.flush()
    scrub_customer(session, erased_event(records["customer_id"]))
    assert NAME not in json.dumps(session.execute(select(ContractStatusChange.note)).scalars().all())
    replica = session.get(CustomerReplica, records["customer_id"])
    assert replica.name == "Erased customer"
