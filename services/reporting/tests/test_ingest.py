"""reporting.ingest: every consumed event lands in the facts once, whatever the arrival order."""
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from crm_common.consumer import processed_events_table
from crm_common.errors import ValidationFailed

from crm_common.testing_cast import BOB

from reporting.ingest import apply_event
from reporting.models import (
    ContractFact, CustomerFact, CustomerLastFollowup, FollowupFact, OpportunityFact, OrderFact, OrderLineFact,
    StageChangeFact,
)


def apply(session, envelope):
    changed = apply_event(session, envelope)
    session.commit()
    return changed


def lines(session, order_id):
    return session.execute(select(OrderLineFact).where(OrderLineFact.order_id == order_id)
                           .order_by(OrderLineFact.position)).scalars().all()


# --- customers ------------------------------------------------------------------------

def test_customer_created_keeps_the_reported_attributes(session, customer, envelope):
    data = customer(lifecycle_stage="churned", lifecycle_dates={
        "lead": "2026-01-05T09:30:00+00:00", "churned": "2026-03-01T23:30:00-02:00"})
    assert apply(session, envelope("customer.created", data)) is True
    row = session.get(CustomerFact, data["id"])
    assert (row.name, row.lifecycle_stage, row.region, row.tier) == ("Acme Ltd", "churned", "east", "B")
    assert row.created_on == date(2026, 1, 5)
    assert row.churned_on == date(2026, 3, 2)  # the UTC day
    assert row.deleted is False and row.refreshed_at is not None


def test_churned_on_is_only_set_while_churned(session, customer, envelope):
    data = customer(lifecycle_stage="customer", lifecycle_dates={"churned": "2026-03-01T10:00:00+00:00"})
    apply(session, envelope("customer.created", data))
    assert session.get(CustomerFact, data["id"]).churned_on is None


def test_redelivered_event_is_applied_once(session, customer, envelope):
    created = envelope("customer.created", customer())
    assert apply(session, created) is True
    assert apply(session, dict(created)) is False
    assert session.execute(select(func.count()).select_from(processed_events_table)).scalar() == 1


def test_update_before_create_and_old_after_new(session, customer, envelope):
    first = customer(version=1)
    cid = first["id"]
    apply(session, envelope("customer.updated", customer(id=cid, version=3, lifecycle_stage="customer")))
    apply(session, envelope("customer.created", first))
    apply(session, envelope("customer.updated", customer(id=cid, version=2, lifecycle_stage="prospect")))
    row = session.get(CustomerFact, cid)
    assert (row.lifecycle_stage, row.version) == ("customer", 3)


def test_deleted_customer_is_marked_deleted_even_before_its_create(session, customer, envelope):
    first = customer(version=1)
    apply(session, envelope("customer.deleted", customer(id=first["id"], version=2, deleted=True)))
    apply(session, envelope("customer.created", first))
    assert session.get(CustomerFact, first["id"]).deleted is True


def test_imported_customers_are_all_written(session, customer, envelope):
    batch = [customer(name=f"Imported {n}") for n in range(3)]
    apply(session, envelope("customer.imported", {"job_id": "j1", "customers": batch}))
    assert session.execute(select(func.count()).select_from(CustomerFact)).scalar() == 3


def test_followups_are_kept_once_and_the_newest_is_remembered(session, followup, envelope):
    newest = followup(occurred_at="2026-11-05T08:00:00+00:00")
    older = followup(customer_id=newest["customer_id"], occurred_at="2026-11-01T08:00:00+00:00")
    apply(session, envelope("followup.logged", newest))
    apply(session, envelope("followup.logged", older))
    apply(session, envelope("followup.logged", older))  # a second event for the same follow-up
    assert session.execute(select(func.count()).select_from(FollowupFact)).scalar() == 2
    assert session.get(FollowupFact, older["id"]).occurred_on == date(2026, 11, 1)
    last = session.get(CustomerLastFollowup, newest["customer_id"])
    assert last.last_followup_at == datetime(2026, 11, 5, 8, tzinfo=timezone.utc)


# --- orders ---------------------------------------------------------------------------

def test_placed_order_and_its_lines_are_counted(session, order, envelope):
    data = order(version=2)
    apply(session, envelope("order.placed", data))
    row = session.get(OrderFact, data["id"])
    assert (row.status, row.counted, row.total, row.placed_on) == (
        "confirmed", True, Decimal("300.00"), date(2026, 11, 3))
    stored = lines(session, data["id"])
    assert [(line.sku, line.quantity, line.total) for line in stored] == [
        ("P-1", Decimal("2.000"), Decimal("200.00")), ("P-2", Decimal("1.000"), Decimal("100.00"))]
    assert all(line.counted and line.owner_id == data["owner_id"] and line.placed_on == date(2026, 11, 3)
               and line.customer_id == data["customer_id"] and line.currency == "CNY" for line in stored)


def test_paid_and_cancelled_move_the_order_and_its_line_copies(session, order, envelope):
    placed = order(version=2)
    apply(session, envelope("order.placed", placed))
    apply(session, envelope("order.paid", order(id=placed["id"], customer_id=placed["customer_id"], version=3,
                                                 status="paid", paid_amount="300.00", lines=placed["lines"])))
    assert session.get(OrderFact, placed["id"]).paid_amount == Decimal("300.00")
    apply(session, envelope("order.cancelled", order(id=placed["id"], customer_id=placed["customer_id"],
                                                      version=4, status="cancelled", lines=placed["lines"])))
    assert session.get(OrderFact, placed["id"]).counted is False
    assert [line.counted for line in lines(session, placed["id"])] == [False, False]


def test_paid_before_placed_keeps_the_paid_row_and_its_copies(session, order, envelope, as_admin):
    placed = order(version=2, owner_id="00000000-0000-4000-8000-00000000000a")
    paid = dict(placed, version=3, status="paid", paid_amount="300.00",
                owner_id="00000000-0000-4000-8000-00000000000b", owner_team_id="west",
                lines=placed["lines"][:1])  # say the paid event carried only the first line
    apply(session, envelope("order.paid", paid))
    apply(session, envelope("order.placed", placed))
    row = session.get(OrderFact, placed["id"])
    assert (row.status, row.version, row.owner_team_id) == ("paid", 3, "west")
    stored = lines(session, placed["id"])
    assert [line.position for line in stored] == [1, 2]  # the late placed added only the missing line
    assert {(line.owner_id, line.owner_team_id, line.counted) for line in stored} == {
        (paid["owner_id"], "west", True)}


def test_draft_order_is_not_counted(session, order, envelope):
    data = order(version=1, status="draft", confirmed_at=None)
    apply(session, envelope("order.placed", data))
    row = session.get(OrderFact, data["id"])
    assert row.counted is False and row.placed_on is None


# --- opportunities and stage changes --------------------------------------------------

def test_opportunity_events_write_the_opportunity_and_each_stage_change_once(session, opportunity, envelope):
    created = opportunity(version=1)
    oid = created["id"]
    apply(session, envelope("opportunity.created", created))
    moved = opportunity(id=oid, version=2, stage="propose", position=2, from_stage="qualify")
    moved_event = envelope("opportunity.stage_changed", moved)
    apply(session, moved_event)
    apply(session, dict(moved_event, event_id="another-delivery-of-the-same-change"))
    won = opportunity(id=oid, version=3, stage="won", position=3, outcome="won",
                      closed_at="2026-11-20T10:00:00+00:00")
    won.pop("stage_change")
    apply(session, envelope("opportunity.won", won))
    late = opportunity(id=oid, version=2, stage="propose")
    late.pop("stage_change")  # opportunity.updated carries none
    apply(session, envelope("opportunity.updated", late))
    row = session.get(OpportunityFact, oid)
    assert (row.stage, row.status, row.version, row.probability) == ("won", "won", 3, 20)
    assert row.expected_close_date == date(2026, 12, 31)
    changes = session.execute(select(StageChangeFact).order_by(StageChangeFact.to_stage_position)).scalars().all()
    assert [(c.from_stage, c.to_stage, c.seconds_in_previous_stage) for c in changes] == [
        (None, "qualify", None), ("qualify", "propose", 3600)]


def test_stage_changes_carry_the_opportunitys_creation_and_current_owner_whatever_arrives_first(
        session, opportunity, envelope):
    created = opportunity(version=1, created_at="2026-10-01T08:00:00+00:00")
    oid = created["id"]
    # The second move overtakes the creation; a later reassignment moves every change to the new owner.
    moved = opportunity(id=oid, version=3, stage="negotiate", position=3, from_stage="qualify",
                        created_at="2026-10-01T08:00:00+00:00")
    apply(session, envelope("opportunity.stage_changed", moved))
    apply(session, envelope("opportunity.created", created))
    lost = opportunity(id=oid, version=4, stage="lost", position=9, outcome="lost", from_stage="negotiate",
                       created_at="2026-10-01T08:00:00+00:00")
    apply(session, envelope("opportunity.stage_changed", lost))
    reassigned = opportunity(id=oid, version=5, stage="lost", position=9, outcome="lost", owner_id=BOB,
                             owner_team_id="west", created_at="2026-10-01T08:00:00+00:00")
    reassigned.pop("stage_change")
    apply(session, envelope("opportunity.updated", reassigned))

    changes = session.execute(select(StageChangeFact)).scalars().all()
    assert len(changes) == 3
    assert {(c.opportunity_created_at, c.owner_id, c.owner_team_id) for c in changes} == {
        (datetime(2026, 10, 1, 8, tzinfo=timezone.utc), BOB, "west")}
    # Furthest forward: negotiate (3); the lost stage (9) is a way out, not a step forward.
    assert session.get(OpportunityFact, oid).furthest_position == 3


def test_lost_opportunity(session, opportunity, envelope):
    lost = opportunity(version=2, stage="lost", position=9, outcome="lost")
    lost.pop("stage_change")
    apply(session, envelope("opportunity.lost", lost))
    assert session.get(OpportunityFact, lost["id"]).status == "lost"


# --- contracts ------------------------------------------------------------------------

@pytest.mark.parametrize("event_type", ["contract.created", "contract.signed", "contract.renewed",
                                        "contract.expiring", "contract.something_new"])
def test_every_contract_event_updates_the_contract(session, contract, envelope, event_type):
    data = contract(version=2, status="signed")
    apply(session, envelope(event_type, data))
    apply(session, envelope("contract.created", contract(id=data["id"], version=1, status="draft")))
    row = session.get(ContractFact, data["id"])
    assert (row.status, row.value, row.end_date, row.title) == (
        "signed", Decimal("5000.00"), date(2026, 12, 31), "Support 2027")


# --- refusals and metrics -------------------------------------------------------------

def test_an_unreadable_event_is_refused_naming_the_field_and_not_recorded(session, order, envelope):
    broken = order()
    del broken["total"]
    with pytest.raises(ValidationFailed) as refused:
        apply_event(session, envelope("order.placed", broken))
    assert "total" in refused.value.errors
    assert session.execute(select(func.count()).select_from(processed_events_table)).scalar() == 0


def test_an_unknown_event_type_is_refused(session, envelope):
    with pytest.raises(ValidationFailed):
        apply_event(session, envelope("invoice.sent", {"id": "x"}))


def lag_count(event_type):
    return REGISTRY.get_sample_value("crm_reporting_event_lag_seconds_count", {"event_type": event_type}) or 0.0


def test_lag_is_observed_when_the_effect_commits(session, contract, envelope):
    before = lag_count("contract.activated")
    apply_event(session, envelope("contract.activated", contract()))
    assert lag_count("contract.activated") == before  # not committed yet
    session.commit()
    assert lag_count("contract.activated") == before + 1
    apply_event(session, envelope("contract.activated", contract()))
    session.rollback()
    session.commit()
    assert lag_count("contract.activated") == before + 1


# --- merges ---------------------------------------------------------------------------

def test_a_merge_moves_the_sources_facts_and_later_ones_to_the_target(session, order, followup, contract,
                                                                        opportunity, envelope):
    source, target, third = "a" * 8 + "-0000-4000-8000-000000000001", "b" * 8 + "-0000-4000-8000-000000000002", \
        "c" * 8 + "-0000-4000-8000-000000000003"
    placed = order(customer_id=source)
    apply(session, envelope("order.placed", placed))
    apply(session, envelope("followup.logged", followup(customer_id=source, occurred_at="2026-11-20T10:00:00+00:00")))
    apply(session, envelope("followup.logged", followup(customer_id=target, occurred_at="2026-11-01T10:00:00+00:00")))

    assert apply(session, envelope("customer.merged", {"source_id": source, "target_id": target,
                                                       "target_version": 4})) is True
    assert session.get(OrderFact, placed["id"]).customer_id == target
    assert {line.customer_id for line in lines(session, placed["id"])} == {target}
    assert session.get(CustomerLastFollowup, target).last_followup_at == datetime(2026, 11, 20, 10, tzinfo=timezone.utc)

    # An order, an opportunity and a contract of the source that reach us after the merge count for the target.
    late_order, late_contract, late_deal = order(customer_id=source), contract(customer_id=source), \
        opportunity(customer_id=source)
    apply(session, envelope("order.paid", late_order))
    apply(session, envelope("contract.signed", late_contract))
    apply(session, envelope("opportunity.created", late_deal))
    assert session.get(OrderFact, late_order["id"]).customer_id == target
    assert session.get(ContractFact, late_contract["id"]).customer_id == target
    assert session.get(OpportunityFact, late_deal["id"]).customer_id == target

    # Merged again: the first source follows its target into the third customer.
    apply(session, envelope("customer.merged", {"source_id": target, "target_id": third, "target_version": 2}))
    another = order(customer_id=source)
    apply(session, envelope("order.placed", another))
    assert session.get(OrderFact, another["id"]).customer_id == third
    assert session.get(OrderFact, placed["id"]).customer_id == third


def test_last_contact_is_the_newest_followup_or_the_creation_whatever_arrives_first(
        session, customer, followup, envelope):
    early, late = customer(), customer()
    apply(session, envelope("customer.created", early))
    assert session.get(CustomerFact, early["id"]).last_contact_at == datetime(2026, 1, 5, 9, 30, tzinfo=timezone.utc)
    apply(session, envelope("followup.logged", followup(customer_id=early["id"],
                                                        occurred_at="2026-11-20T10:00:00+00:00")))
    assert session.get(CustomerFact, early["id"]).last_contact_at == datetime(2026, 11, 20, 10, tzinfo=timezone.utc)

    # The follow-up overtakes its customer's creation; a later update keeps the contact time.
    apply(session, envelope("followup.logged", followup(customer_id=late["id"],
                                                        occurred_at="2026-11-21T10:00:00+00:00")))
    apply(session, envelope("customer.created", late))
    apply(session, envelope("customer.updated", dict(late, version=2, name="Renamed")))
    assert session.get(CustomerFact, late["id"]).last_contact_at == datetime(2026, 11, 21, 10, tzinfo=timezone.utc)
