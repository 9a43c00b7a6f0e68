import pytest
from sqlalchemy import func, select

from crm_common.consumer import processed_events_table
from crm_common.context import RequestContext
from crm_common.errors import ValidationFailed

from reporting.domain import CustomerFacts, Reports
from reporting.models import CustomerFact

BOB = "00000000-0000-4000-8000-00000000000b"
EMPTY = {"lead": 0, "prospect": 0, "customer": 0, "churned": 0}


def summary(session, context, filters=None):
    return Reports(session, context).customers_summary(filters)


def test_empty_summary_has_every_stage(session, as_admin):
    assert summary(session, as_admin) == {"total": 0, "by_lifecycle_stage": EMPTY}


def test_created_customers_are_counted_by_stage(session, as_admin, customer, envelope):
    facts = CustomerFacts(session)
    assert facts.apply(envelope("customer.created", customer()))
    facts.apply(envelope("customer.created", customer(lifecycle_stage="prospect")))
    facts.apply(envelope("customer.created", customer(lifecycle_stage="prospect")))
    assert summary(session, as_admin) == {
        "total": 3, "by_lifecycle_stage": {**EMPTY, "lead": 1, "prospect": 2}}


def test_same_envelope_twice_is_counted_once(session, as_admin, customer, envelope):
    created = envelope("customer.created", customer())
    facts = CustomerFacts(session)
    assert facts.apply(created) is True
    assert facts.apply(dict(created)) is False
    assert summary(session, as_admin)["total"] == 1
    assert session.execute(select(func.count()).select_from(processed_events_table)).scalar() == 1


def test_delete_before_create_is_not_lost(session, as_admin, customer, envelope):
    created = customer(version=1)
    deleted = customer(id=created["id"], version=2, deleted=True)
    facts = CustomerFacts(session)
    assert facts.apply(envelope("customer.deleted", deleted)) is True
    assert facts.apply(envelope("customer.created", created)) is False
    assert summary(session, as_admin)["total"] == 0
    row = session.get(CustomerFact, created["id"])
    assert row.deleted is True and row.version == 2


def test_an_older_update_never_overwrites_a_newer_one(session, as_admin, customer, envelope):
    first = customer(version=1)
    cid = first["id"]
    facts = CustomerFacts(session)
    facts.apply(envelope("customer.created", first))
    v3 = customer(id=cid, version=3, lifecycle_stage="customer",
                  changes={"lifecycle_stage": {"old": "prospect", "new": "customer"}})
    v2 = customer(id=cid, version=2, lifecycle_stage="prospect",
                  changes={"lifecycle_stage": {"old": "lead", "new": "prospect"}})
    assert facts.apply(envelope("customer.updated", v3)) is True
    assert facts.apply(envelope("customer.updated", v2)) is False
    assert summary(session, as_admin)["by_lifecycle_stage"] == {**EMPTY, "customer": 1}
    assert session.get(CustomerFact, cid).version == 3


def test_update_before_create_upserts(session, as_admin, customer, envelope):
    v1 = customer(version=1)
    v2 = customer(id=v1["id"], version=2, lifecycle_stage="prospect", changes={})
    facts = CustomerFacts(session)
    facts.apply(envelope("customer.updated", v2))
    facts.apply(envelope("customer.created", v1))
    assert summary(session, as_admin)["by_lifecycle_stage"] == {**EMPTY, "prospect": 1}


def test_a_newer_snapshot_can_restore_a_deleted_customer(session, as_admin, customer, envelope):
    v1 = customer(version=1)
    facts = CustomerFacts(session)
    facts.apply(envelope("customer.created", v1))
    facts.apply(envelope("customer.deleted", customer(id=v1["id"], version=2, deleted=True)))
    assert summary(session, as_admin)["total"] == 0
    facts.apply(envelope("customer.updated", customer(id=v1["id"], version=3, changes={})))
    assert summary(session, as_admin)["total"] == 1


def test_summary_is_scoped_by_role(session, customer, envelope, as_alice, as_bob,
                                   as_east_manager, as_admin):
    facts = CustomerFacts(session)
    facts.apply(envelope("customer.created", customer()))                        # alice, east
    facts.apply(envelope("customer.created", customer(lifecycle_stage="customer")))  # alice, east
    facts.apply(envelope("customer.created", customer(owner_id=BOB, owner_team_id="west")))
    facts.apply(envelope("customer.created", customer(owner_id=None, owner_team_id=None)))
    assert summary(session, as_alice) == {
        "total": 2, "by_lifecycle_stage": {**EMPTY, "lead": 1, "customer": 1}}
    assert summary(session, as_bob)["total"] == 1
    assert summary(session, as_east_manager)["total"] == 2
    assert summary(session, as_admin)["total"] == 4
    for role in ("support", "viewer"):
        assert summary(session, RequestContext(user_id="x", role=role))["total"] == 4
    # An unknown or missing role counts nothing rather than everything.
    assert summary(session, RequestContext(user_id="x", role="intern"))["total"] == 0
    assert summary(session, RequestContext())["total"] == 0


def test_filters_narrow_but_never_widen(session, customer, envelope, as_alice, as_admin):
    facts = CustomerFacts(session)
    facts.apply(envelope("customer.created", customer(region="east")))
    facts.apply(envelope("customer.created", customer(region="west")))
    facts.apply(envelope("customer.created", customer(owner_id=BOB, owner_team_id="west", region="west")))
    assert summary(session, as_admin, {"region": "west"})["total"] == 2
    assert summary(session, as_alice, {"region": "west"})["total"] == 1
    assert summary(session, as_alice, {"owner_id": BOB})["total"] == 0
    assert summary(session, as_admin, {"created_from": "2026-01-05T00:00:00Z",
                                       "created_to": "2026-01-06T00:00:00Z"})["total"] == 3
    assert summary(session, as_admin, {"created_from": "2026-01-06T00:00:00Z"})["total"] == 0
    with pytest.raises(ValidationFailed) as caught:
        summary(session, as_admin, {"colour": "red"})
    assert "colour" in caught.value.errors


@pytest.mark.parametrize("data, field", [
    ({"kind": "person"}, "id"),
    ({"id": "c-1", "lifecycle_stage": "lead", "created_at": "2026-01-01T00:00:00Z"}, "version"),
    ({"id": "c-1", "version": "2", "lifecycle_stage": "lead",
      "created_at": "2026-01-01T00:00:00Z"}, "version"),
])
def test_a_malformed_event_fails_and_records_nothing(session, envelope, data, field):
    with pytest.raises(ValidationFailed) as caught:
        CustomerFacts(session).apply(envelope("customer.created", data))
    assert field in caught.value.errors
    assert session.execute(select(func.count()).select_from(processed_events_table)).scalar() == 0


def test_an_imported_batch_counts_each_customer_once(session, as_admin, customer, envelope):
    facts = CustomerFacts(session)
    batch = envelope("customer.imported", {"customers": [customer(), customer(lifecycle_stage="customer"),
                                                          customer()]})
    assert facts.apply_imported(batch) == 3
    assert facts.apply_imported(batch) == 0  # delivered twice, counted once
    assert summary(session, as_admin) == {"total": 3, "by_lifecycle_stage": {**EMPTY, "lead": 2, "customer": 1}}
    with pytest.raises(ValidationFailed):
        facts.apply_imported(envelope("customer.imported", {"customers": [{"id": "x"}]}))
