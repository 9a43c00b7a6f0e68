"""An erased customer leaves no name in reporting's read models; the amounts stay."""
from decimal import Decimal

from reporting.ingest import apply_event
from reporting.models import ContractFact, CustomerFact, OrderFact
from reporting.personal_data import apply_erased


def test_the_erasure_snapshot_and_customer_erased_leave_no_name_and_keep_amounts(
        session, customer, contract, order, envelope):
    person = customer(name="Wang Xiaoming")
    apply_event(session, envelope("customer.created", person))
    apply_event(session, envelope("contract.created", contract(customer_id=person["id"],
                                                                title="Support for Wang Xiaoming")))
    placed = order(customer_id=person["id"])
    apply_event(session, envelope("order.placed", placed))
    erased_snapshot = {**person, "name": "Erased customer 1234abcd", "version": 3}
    apply_event(session, envelope("customer.updated", erased_snapshot))
    assert session.get(CustomerFact, person["id"]).name == "Erased customer 1234abcd"

    event = envelope("customer.erased", {"customer_id": person["id"], "name": "Erased customer 1234abcd"})
    assert apply_erased(session, event) is True
    assert apply_erased(session, dict(event)) is False
    assert session.get(ContractFact, session.query(ContractFact.contract_id).scalar()).title == "[erased]"
    assert session.get(OrderFact, placed["id"]).total == Decimal("300.00")


def test_customer_erased_before_the_snapshot_still_renames(session, customer, envelope):
    person = customer(name="Wang Xiaoming")
    apply_event(session, envelope("customer.created", person))
    apply_erased(session, envelope("customer.erased", {"customer_id": person["id"]}))
    assert session.get(CustomerFact, person["id"]).name == "Erased customer"
    # The erasure's own snapshot (newer) arriving afterwards gives the final name.
    apply_event(session, envelope("customer.updated", {**person, "name": "Erased customer 1234abcd", "version": 2}))
    assert session.get(CustomerFact, person["id"]).name == "Erased customer 1234abcd"
