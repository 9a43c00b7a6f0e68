"""The service's entrypoints, through nameko's worker_factory, and its migrations."""
import pytest
from nameko.testing.services import worker_factory

from crm_common.errors import NotFound, ValidationFailed
from crm_common.testing import schema_drift

from sales.models import Base, CustomerReplica
from sales.service import SalesService

BOB = "00000000-0000-4000-8000-00000000000b"


def test_handlers_keep_the_replica_that_customer_known_reads(session, as_alice, customer,
                                                            envelope, assigned):
    service = worker_factory(SalesService, db=session, context=as_alice)
    created = customer()
    cid = created["id"]
    assert service.customer_known(cid) is False

    service.on_customer_created(envelope("customer.created", created))
    service.on_customer_assigned(assigned(cid, BOB, created["owner_id"], version=2))
    assert service.customer_known(cid) is True

    deleted = envelope("customer.deleted", customer(id=cid, version=3, deleted=True))
    service.on_customer_deleted(deleted)
    service.on_customer_deleted(deleted)  # redelivered
    # An older update arriving late does not bring the customer back.
    service.on_customer_updated(envelope("customer.updated", customer(id=cid, version=2, changes={})))
    assert service.customer_known(cid) is False


def test_migrations_match_the_models(tmp_path):
    assert schema_drift("sales.migrations", Base.metadata, f"sqlite:///{tmp_path}/s.db") == []


def test_the_service_itself_keeps_a_sales_user_off_another_owners_records(session, as_alice, as_bob):
    """No gateway here: the service refuses Alice everything of Bob's (404 by id, 422 like a missing
    customer when she names his customer), and his records stay as they were."""
    bobs_customer, alices_customer = "44444444-4444-4444-8444-444444444444", "55555555-5555-4555-8555-555555555555"
    session.add(CustomerReplica(id=bobs_customer, name="Bob's", owner_id=BOB, owner_team_id="west", version=1))
    session.add(CustomerReplica(id=alices_customer, name="Alice's", owner_id=as_alice.user_id,
                                owner_team_id="east", version=1))
    session.flush()
    bob = worker_factory(SalesService, db=session, context=as_bob)
    alice = worker_factory(SalesService, db=session, context=as_alice)
    line = {"description": "Service", "quantity": "1", "unit_price": "10.00", "tax_rate": "0"}
    document = {"customer_id": bobs_customer, "currency": "CNY", "lines": [line]}
    contract = {"customer_id": bobs_customer, "title": "Support", "value": "100", "currency": "CNY",
                "start_date": "2030-01-01", "end_date": "2030-12-31"}
    opportunity = {"customer_id": bobs_customer, "title": "Deal", "amount": "100.00", "currency": "CNY"}
    records = {
        "opportunity": bob.create_opportunity(opportunity, "west"),
        "quote": bob.create_quote(document, "west"),
        "order": bob.create_order(document, "west"),
        "contract": bob.create_contract(contract, "west"),
    }
    readers = {"opportunity": bob.get_opportunity, "quote": bob.get_quote, "order": bob.get_order,
               "contract": bob.get_contract}
    before = {kind: readers[kind](record["id"]) for kind, record in records.items()}

    attempts = [
        (alice.get_opportunity, records["opportunity"]["id"]),
        (alice.update_opportunity, records["opportunity"]["id"], {"title": "Mine"}),
        (alice.move_opportunity, records["opportunity"]["id"], {"stage": "proposal"}),
        (alice.opportunity_history, records["opportunity"]["id"]),
        (alice.get_quote, records["quote"]["id"]),
        (alice.update_quote, records["quote"]["id"], {"notes": "Mine"}),
        (alice.send_quote, records["quote"]["id"]),
        (alice.accept_quote, records["quote"]["id"]),
        (alice.get_order, records["order"]["id"]),
        (alice.confirm_order, records["order"]["id"]),
        (alice.pay_order, records["order"]["id"], {"amount": "1.00", "method": "card"}),
        (alice.list_payments, records["order"]["id"]),
        (alice.cancel_order, records["order"]["id"], {"reason": "Mine"}),
        (alice.get_contract, records["contract"]["id"]),
        (alice.update_contract, records["contract"]["id"], {"title": "Mine"}),
        (alice.submit_contract, records["contract"]["id"]),
        (alice.sign_contract, records["contract"]["id"], {}),
    ]
    for method, *arguments in attempts:
        with pytest.raises(NotFound):
            method(*arguments)

    # Bob's customer named in a new record: the answer for a customer that does not exist.
    missing = "66666666-6666-4666-8666-666666666666"
    for create, body in ((alice.create_opportunity, opportunity), (alice.create_quote, document),
                         (alice.create_order, document), (alice.create_contract, contract)):
        for customer_id in (bobs_customer, missing):
            with pytest.raises(ValidationFailed) as refused:
                create({**body, "customer_id": customer_id}, "east")
            assert refused.value.errors == {"customer_id": ["Unknown or deleted customer."]}
    # Nor may she move her own draft contract onto his customer, or name his opportunity on her quote.
    mine = alice.create_contract({**contract, "customer_id": alices_customer}, "east")
    with pytest.raises(ValidationFailed) as refused:
        alice.update_contract(mine["id"], {"customer_id": bobs_customer})
    assert "customer_id" in refused.value.errors
    with pytest.raises(ValidationFailed) as refused:
        alice.create_quote({**document, "customer_id": alices_customer,
                            "opportunity_id": records["opportunity"]["id"]}, "east")
    assert "opportunity_id" in refused.value.errors

    # Lists filtered by Bob or by his customer show Alice nothing of his.
    for lister, filters in ((alice.list_opportunities, {"owner_id": BOB}),
                            (alice.list_opportunities, {"customer_id": bobs_customer}),
                            (alice.list_quotes, {"owner_id": BOB}), (alice.list_orders, {"customer_id": bobs_customer}),
                            (alice.list_contracts, {"owner_id": BOB}),
                            (alice.list_contracts, {"customer_id": bobs_customer})):
        assert lister(filters)["items"] == []
    assert {kind: readers[kind](record["id"]) for kind, record in records.items()} == before
