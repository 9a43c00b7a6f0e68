import pytest
from sqlalchemy import func, select

from crm_common.consumer import processed_events_table
from crm_common.errors import ValidationFailed

from sales.domain import CustomerReplicaFeed, customer_known, require_active_customer
from sales.models import CustomerReplica

ALICE = "00000000-0000-4000-8000-00000000000a"
BOB = "00000000-0000-4000-8000-00000000000b"
CAROL = "00000000-0000-4000-8000-00000000000c"
UNKNOWN = {"customer_id": ["Unknown or deleted customer."]}


def replica(session, customer_id):
    session.expire_all()
    return session.get(CustomerReplica, customer_id)


def processed(session):
    return session.execute(select(func.count()).select_from(processed_events_table)).scalar()


def test_a_created_customer_is_known_and_active(session, customer, envelope):
    created = customer(name="Acme Ltd")
    assert CustomerReplicaFeed(session).apply_snapshot(envelope("customer.created", created))
    assert customer_known(session, created["id"]) is True
    row = require_active_customer(session, created["id"])
    assert (row.name, row.owner_id, row.owner_team_id, row.version) == ("Acme Ltd", ALICE, "east", 1)


@pytest.mark.parametrize("customer_id", ["00000000-0000-4000-8000-000000000000", "", None, 42])
def test_an_unknown_customer_is_refused_on_the_field(session, customer_id):
    assert customer_known(session, customer_id) is False
    with pytest.raises(ValidationFailed) as caught:
        require_active_customer(session, customer_id)
    assert caught.value.errors == UNKNOWN


def test_a_deleted_customer_is_refused(session, customer, envelope):
    created = customer()
    feed = CustomerReplicaFeed(session)
    feed.apply_snapshot(envelope("customer.created", created))
    feed.apply_snapshot(envelope("customer.deleted", customer(id=created["id"], version=2, deleted=True)))
    assert customer_known(session, created["id"]) is False
    with pytest.raises(ValidationFailed) as caught:
        require_active_customer(session, created["id"])
    assert caught.value.errors == UNKNOWN


def test_same_envelope_twice_is_applied_once(session, customer, envelope):
    created = envelope("customer.created", customer())
    feed = CustomerReplicaFeed(session)
    assert feed.apply_snapshot(created) is True
    assert feed.apply_snapshot(dict(created)) is False
    assert processed(session) == 1


def test_delete_before_create_is_not_lost(session, customer, envelope):
    created = customer(version=1)
    feed = CustomerReplicaFeed(session)
    assert feed.apply_snapshot(envelope("customer.deleted", customer(id=created["id"], version=2, deleted=True)))
    assert feed.apply_snapshot(envelope("customer.created", created)) is False
    assert customer_known(session, created["id"]) is False
    assert replica(session, created["id"]).version == 2


def test_an_older_update_never_overwrites_a_newer_one(session, customer, envelope):
    created = customer(version=1, name="Acme")
    cid = created["id"]
    feed = CustomerReplicaFeed(session)
    feed.apply_snapshot(envelope("customer.created", created))
    assert feed.apply_snapshot(envelope("customer.updated", customer(id=cid, version=3, name="Acme v3", changes={})))
    assert not feed.apply_snapshot(envelope("customer.updated", customer(id=cid, version=2, name="Acme v2", changes={})))
    row = replica(session, cid)
    assert (row.name, row.version) == ("Acme v3", 3)


def test_update_before_create_upserts(session, customer, envelope):
    created = customer(version=1, name="Old")
    feed = CustomerReplicaFeed(session)
    feed.apply_snapshot(envelope("customer.updated", customer(id=created["id"], version=2, name="New", changes={})))
    feed.apply_snapshot(envelope("customer.created", created))
    assert require_active_customer(session, created["id"]).name == "New"


def test_assignment_moves_the_owner_to_its_version(session, customer, envelope, assigned):
    created = customer(owner_id=ALICE)
    feed = CustomerReplicaFeed(session)
    feed.apply_snapshot(envelope("customer.created", created))
    # The assignment made at creation repeats what the snapshot of v1 said.
    assert feed.apply_assigned(assigned(created["id"], ALICE, None, version=1)) is False
    assert feed.apply_assigned(assigned(created["id"], BOB, ALICE, version=2, owner_team_id="west")) is True
    row = replica(session, created["id"])
    assert (row.owner_id, row.owner_team_id, row.version) == (BOB, "west", 2)


def test_assignment_before_create_inserts_and_the_late_create_is_skipped(session, customer, envelope,
                                                                        assigned):
    created = customer(owner_id=ALICE)
    feed = CustomerReplicaFeed(session)
    assert feed.apply_assigned(assigned(created["id"], ALICE, None, version=1)) is True
    assert replica(session, created["id"]).owner_id == ALICE
    assert feed.apply_snapshot(envelope("customer.created", created)) is False
    assert require_active_customer(session, created["id"]).owner_id == ALICE


def test_a_stale_assignment_does_not_regress_the_owner(session, customer, envelope, assigned):
    created = customer(owner_id=ALICE)
    cid = created["id"]
    feed = CustomerReplicaFeed(session)
    feed.apply_snapshot(envelope("customer.created", created))
    # Alice -> Bob (v2) -> Carol (v3) happened; the v3 snapshot arrives before both assignments.
    feed.apply_snapshot(envelope("customer.updated", customer(id=cid, version=3, owner_id=CAROL, changes={})))
    assert feed.apply_assigned(assigned(cid, BOB, ALICE, version=2)) is False
    assert feed.apply_assigned(assigned(cid, CAROL, BOB, version=3)) is False
    assert replica(session, cid).owner_id == CAROL


def test_assignments_delivered_in_reverse_end_with_the_latest(session, customer, envelope, assigned):
    created = customer(owner_id=ALICE)
    cid = created["id"]
    feed = CustomerReplicaFeed(session)
    feed.apply_snapshot(envelope("customer.created", created))
    back_to_alice = assigned(cid, ALICE, BOB, version=3)
    feed.apply_assigned(back_to_alice)
    assert feed.apply_assigned(assigned(cid, BOB, ALICE, version=2)) is False
    assert feed.apply_assigned(dict(back_to_alice)) is False  # redelivered
    assert replica(session, cid).owner_id == ALICE


def test_a_newer_snapshot_overrides_an_assignment(session, customer, envelope, assigned):
    created = customer(owner_id=ALICE)
    cid = created["id"]
    feed = CustomerReplicaFeed(session)
    feed.apply_snapshot(envelope("customer.created", created))
    feed.apply_assigned(assigned(cid, BOB, ALICE, version=2))
    feed.apply_snapshot(envelope("customer.updated", customer(
        id=cid, version=3, owner_id=BOB, owner_team_id="west", name="Renamed", changes={})))
    row = replica(session, cid)
    assert (row.owner_id, row.owner_team_id, row.name, row.version) == (BOB, "west", "Renamed", 3)


@pytest.mark.parametrize("data, field", [
    ({"name": "No id", "version": 1}, "id"),
    ({"id": "c-1", "name": "No version"}, "version"),
    ({"id": "c-1", "version": 1}, "name"),
])
def test_a_malformed_snapshot_fails_and_records_nothing(session, envelope, data, field):
    with pytest.raises(ValidationFailed) as caught:
        CustomerReplicaFeed(session).apply_snapshot(envelope("customer.created", data))
    assert field in caught.value.errors
    assert processed(session) == 0


def test_imported_customers_become_known(session, customer, envelope):
    batch = [customer(name="One"), customer(name="Two")]
    feed = CustomerReplicaFeed(session)
    imported = envelope("customer.imported", {"customers": batch})
    assert feed.apply_imported(imported) == 2
    assert feed.apply_imported(imported) == 0
    assert [require_active_customer(session, c["id"]).name for c in batch] == ["One", "Two"]
    # A later update of one of them still wins over the import's version 1.
    feed.apply_snapshot(envelope("customer.deleted", customer(name="Two", version=2, deleted=True, id=batch[1]["id"])))
    assert customer_known(session, batch[1]["id"]) is False
